/**
 * The real Pulumi engine, offline: the CLI and plugins `build.sh` made from Go modules, a file
 * backend in a temporary folder, the passphrase secrets provider, plugins from PATH only and no
 * update check. Used by `npm run infra:check` and the engine tests.
 */
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

/** Builds the toolchain (or finds it cached) and returns its bin directory. */
export function ensureToolchain(): string {
  const out = execFileSync("bash", [join(repoRoot, "infra", "toolchain", "build.sh")], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
  });
  const bin = out.trim().split("\n").at(-1);
  if (!bin) throw new Error("infra/toolchain/build.sh printed no bin directory");
  return bin;
}

/** A resource provider the program uses that build.sh could not build, and the proxy's answer. */
export interface MissingProvider {
  name: string;
  module: string;
  reason: string;
}

/** What build.sh recorded for each provider it could not build (cloudflare, upstash, command). */
export function missingProviders(bin: string): MissingProvider[] {
  return readFileSync(join(bin, "..", "providers.txt"), "utf8")
    .trim()
    .split("\n")
    .filter(Boolean)
    .map((line) => {
      const [name = "", , module = "", reason = ""] = line.split("\t");
      return { name, module, reason };
    });
}

export interface PulumiResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface Engine {
  /** The file backend's folder: state files live under `.pulumi/stacks/<project>/`. */
  backendDir: string;
  env: NodeJS.ProcessEnv;
  /** Runs `pulumi <args>` in `cwd`; never throws for a non-zero exit. */
  pulumi(args: string[], opts: { cwd: string; input?: string }): Promise<PulumiResult>;
  dispose(): void;
}

/** Engine runs in a fresh backend; `extraEnv` adds provider credentials (dummies offline). */
export function createEngine(bin: string, extraEnv: NodeJS.ProcessEnv = {}): Engine {
  const backendDir = mkdtempSync(join(tmpdir(), "tcoder-pulumi-"));
  const env: NodeJS.ProcessEnv = {
    PATH: `${bin}:${process.env.PATH ?? ""}`,
    HOME: process.env.HOME,
    PULUMI_HOME: join(backendDir, "home"),
    PULUMI_BACKEND_URL: `file://${backendDir}`,
    PULUMI_CONFIG_PASSPHRASE: "tcoder-engine-check",
    PULUMI_SKIP_UPDATE_CHECK: "true",
    PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
    PULUMI_SKIP_CONFIRMATIONS: "true",
    // Plain output the tests and snapshots can read.
    NO_COLOR: "1",
    TERM: "dumb",
    ...extraEnv,
  };
  return {
    backendDir,
    env,
    pulumi(args, { cwd, input }) {
      return new Promise((resolve, reject) => {
        const child = spawn(join(bin, "pulumi"), [...args, "--non-interactive", "--color", "never"], { cwd, env });
        let stdout = "";
        let stderr = "";
        child.stdout.on("data", (chunk: Buffer) => {
          stdout += chunk.toString();
        });
        child.stderr.on("data", (chunk: Buffer) => {
          stderr += chunk.toString();
        });
        child.on("error", reject);
        child.on("close", (code) => resolve({ code: code ?? 1, stdout, stderr }));
        child.stdin.end(input ?? "");
      });
    },
    dispose() {
      rmSync(backendDir, { recursive: true, force: true });
    },
  };
}
