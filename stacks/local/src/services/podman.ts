/**
 * How this project calls podman (Debian's 4.3, as root). One definition of the flags a build or a
 * container needs on these machines, so the image build, the container runner and the docs agree:
 * - `--runtime runc --cgroup-manager cgroupfs`: crun refuses the hybrid cgroup layout here;
 * - `--ulimit nofile=… nproc=…` at or below the current limits: podman's defaults raise them, and
 *   raising resource limits is not permitted here;
 * - `--network host`: builds reach apt and npm, machines reach the local stack on loopback.
 */
import { execFile, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

/** Global flags, before the subcommand. */
export const podmanGlobalFlags = ["--runtime", "runc", "--cgroup-manager", "cgroupfs"] as const;

/** Flags for `build` and `run`: limits podman may set here, and the host's network. */
export const podmanContainerFlags = [
  "--ulimit",
  "nofile=1024:1024",
  "--ulimit",
  "nproc=1024:1024",
  "--network",
  "host",
] as const;

export class PodmanError extends Error {
  constructor(
    readonly args: readonly string[],
    readonly exitCode: number | null,
    readonly stderr: string,
  ) {
    super(
      `podman ${args.slice(0, 2).join(" ")} failed (exit ${exitCode}): ${stderr.trim().split("\n").slice(-5).join(" | ")}`,
    );
    this.name = "PodmanError";
  }
}

/** Runs `podman <args>` to completion and returns its stdout; rejects with PodmanError. */
export async function podman(args: readonly string[], opts: { input?: string } = {}): Promise<string> {
  try {
    const { stdout } = await execFileAsync("podman", [...podmanGlobalFlags, ...args], {
      maxBuffer: 64 * 1024 * 1024,
      ...(opts.input === undefined ? {} : { input: opts.input }),
    });
    return stdout;
  } catch (error) {
    const failed = error as { code?: number | string; stderr?: string; message: string };
    if (failed.code === "ENOENT") {
      throw new PodmanError(args, null, "podman is not installed (node stacks/local/bootstrap.mjs --for image)");
    }
    throw new PodmanError(args, typeof failed.code === "number" ? failed.code : null, failed.stderr ?? failed.message);
  }
}

/** Runs `podman <args>` with its output lines (stdout and stderr) passed to `onLine`; resolves on exit 0. */
export function podmanStreaming(
  args: readonly string[],
  onLine: (line: string) => void,
  opts: { stdin?: NodeJS.ReadableStream } = {},
): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn("podman", [...podmanGlobalFlags, ...args], {
      stdio: [opts.stdin ? "pipe" : "ignore", "pipe", "pipe"],
    });
    const tail: string[] = [];
    for (const stream of [child.stdout, child.stderr]) {
      if (!stream) continue;
      createInterface({ input: stream }).on("line", (line) => {
        tail.push(line);
        if (tail.length > 20) tail.shift();
        onLine(line);
      });
    }
    if (opts.stdin && child.stdin) opts.stdin.pipe(child.stdin);
    child.once("error", (error) => reject(new PodmanError(args, null, error.message)));
    child.once("close", (code) => (code === 0 ? resolve() : reject(new PodmanError(args, code, tail.join("\n")))));
  });
}

/** `podman image inspect`, or null when there is no such image. */
export async function inspectImage(
  ref: string,
): Promise<{ id: string; size: number; labels: Record<string, string> } | null> {
  const out = await podman(["image", "inspect", ref]).catch((error: unknown) => {
    if (error instanceof PodmanError && /image not known|no such image|unable to find/i.test(error.stderr)) return null;
    throw error;
  });
  if (out === null) return null;
  const [image] = JSON.parse(out) as { Id: string; Size: number; Labels?: Record<string, string> | null }[];
  if (!image) return null;
  return { id: image.Id, size: image.Size, labels: image.Labels ?? {} };
}
