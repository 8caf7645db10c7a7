/** Wall and CPU time of a command, shared by the ladder bench and the pipeline bench. */
import { spawn } from "node:child_process";
import { rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface Measured {
  wallSeconds: number;
  cpuSeconds: number;
}

/** Runs a command under bash so `times` reports the CPU its children used (all threads). */
export function measure(command: string, args: readonly string[]): Promise<Measured> {
  const script = '"$@" >/dev/null 2>"$TCODER_BENCH_ERR" || { cat "$TCODER_BENCH_ERR" >&2; exit 1; }; times';
  const errPath = join(tmpdir(), `tcoder-bench-${process.pid}.err`);
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn("bash", ["-c", script, "bash", command, ...args], {
      stdio: ["ignore", "pipe", "inherit"],
      env: { ...process.env, TCODER_BENCH_ERR: errPath },
    });
    let out = "";
    child.stdout.on("data", (chunk: Buffer) => {
      out += chunk.toString();
    });
    child.on("close", (code) => {
      rmSync(errPath, { force: true });
      if (code !== 0) return reject(new Error(`${command} failed`));
      const childLine = out.trim().split("\n").at(-1) ?? "";
      const toSeconds = (t: string) => {
        const m = /(\d+)m([\d.]+)s/.exec(t);
        return m ? Number(m[1]) * 60 + Number(m[2]) : 0;
      };
      const [user = "", system = ""] = childLine.split(/\s+/);
      resolve({ wallSeconds: (performance.now() - started) / 1000, cpuSeconds: toSeconds(user) + toSeconds(system) });
    });
  });
}
