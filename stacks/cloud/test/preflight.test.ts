import { spawnSync } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, test } from "vitest";

const main = join(dirname(fileURLToPath(import.meta.url)), "..", "src", "main.ts");
const dirs: string[] = [];

/** A PATH holding only a fake `pulumi` that answers `version` and `whoami` as told. */
function pathWithPulumi(whoami: { status: number; out: string } | undefined): string {
  const dir = mkdtempSync(join(tmpdir(), "tcoder-cloud-"));
  dirs.push(dir);
  if (whoami) {
    const script = join(dir, "pulumi");
    writeFileSync(
      script,
      `#!/bin/sh\ncase "$1" in\n  version) echo v3.248.0 ;;\n  whoami) echo "${whoami.out}" >&2; exit ${whoami.status} ;;\n  *) exit 99 ;;\nesac\n`,
    );
    chmodSync(script, 0o755);
  }
  return dir;
}

function runCli(args: string[], env: Record<string, string>) {
  const result = spawnSync(process.execPath, ["--import", "tsx", main, ...args], {
    env: { HOME: tmpdir(), ...env },
    encoding: "utf8",
    timeout: 20_000,
  });
  return { status: result.status, stderr: result.stderr };
}

afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe("npm run deploy|preview -- <stack> fails early and says what to do", () => {
  test("without the Pulumi CLI on PATH it exits 2 and says how to install it", () => {
    const { status, stderr } = runCli(["preview", "dev"], { PATH: pathWithPulumi(undefined) });
    expect(status).toBe(2);
    expect(stderr).toContain("tcoder preview dev: The Pulumi CLI is not on PATH.");
    expect(stderr).toContain("https://get.pulumi.com");
  });

  test("without Pulumi credentials it exits 2 and says how to log in", () => {
    const PATH = pathWithPulumi({ status: 255, out: "error: PULUMI_ACCESS_TOKEN must be set for login" });
    const { status, stderr } = runCli(["up", "dev"], { PATH, CLOUDFLARE_API_TOKEN: "x" });
    expect(status).toBe(2);
    expect(stderr).toContain("tcoder up dev: Pulumi has no credentials. Set PULUMI_ACCESS_TOKEN or run `pulumi login`");
  });

  test("without a Cloudflare token it exits 2 and names the variable", () => {
    const PATH = pathWithPulumi({ status: 0, out: "someone" });
    const { status, stderr } = runCli(["preview", "prod"], { PATH });
    expect(status).toBe(2);
    expect(stderr).toContain("tcoder preview prod: CLOUDFLARE_API_TOKEN is not set.");
  });

  test("without a stack name it prints usage and exits 64", () => {
    const { status, stderr } = runCli(["preview"], { PATH: pathWithPulumi(undefined) });
    expect(status).toBe(64);
    expect(stderr).toContain("usage: npm run deploy -- <stack>");
  });
});
