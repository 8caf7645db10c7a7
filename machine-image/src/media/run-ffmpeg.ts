/**
 * Runs ffmpeg/ffprobe as child processes: progress from `-progress pipe:1`, errors with the tail of
 * stderr, and a kill switch (AbortSignal) for cancellation, lost leases and shutdown.
 */
import { spawn } from "node:child_process";

/** Every ffmpeg run: no banner, never reads stdin, overwrites its outputs, prints only errors (kept for FfmpegError). */
export const ffmpegQuiet = ["-hide_banner", "-nostdin", "-y", "-loglevel", "error"] as const;

export interface FfmpegProgress {
  /** Seconds of output written so far. */
  outTimeSeconds: number;
  /** Encoding speed as a multiple of real time, when ffmpeg reports it. */
  speed?: number;
  done: boolean;
}

export class FfmpegError extends Error {
  constructor(
    message: string,
    readonly exitCode: number | null,
    readonly stderrTail: string,
  ) {
    super(message);
    this.name = "FfmpegError";
  }
}

export class FfmpegAbortedError extends Error {
  constructor() {
    super("ffmpeg was stopped");
    this.name = "FfmpegAbortedError";
  }
}

/** Parses one `-progress` block (key=value lines ending in `progress=continue|end`). */
export function parseProgressBlock(lines: readonly string[]): FfmpegProgress | null {
  const fields = new Map<string, string>();
  for (const line of lines) {
    const eq = line.indexOf("=");
    if (eq > 0) fields.set(line.slice(0, eq).trim(), line.slice(eq + 1).trim());
  }
  const state = fields.get("progress");
  if (state !== "continue" && state !== "end") return null;
  const micros = Number(fields.get("out_time_us") ?? fields.get("out_time_ms"));
  const speed = Number.parseFloat(fields.get("speed") ?? "");
  return {
    outTimeSeconds: Number.isFinite(micros) && micros > 0 ? micros / 1_000_000 : 0,
    ...(Number.isFinite(speed) && speed > 0 ? { speed } : {}),
    done: state === "end",
  };
}

export interface RunOptions {
  signal?: AbortSignal;
  onProgress?: (progress: FfmpegProgress) => void;
  /** Every chunk of stderr (the error keeps only its tail), for runs whose log is their result. */
  onStderr?: (chunk: string) => void;
  command?: string;
}

const STDERR_TAIL_BYTES = 4000;

/** Runs ffmpeg to completion; rejects with FfmpegError (non-zero exit) or FfmpegAbortedError. */
export function runFfmpeg(args: readonly string[], options: RunOptions = {}): Promise<void> {
  const { signal, onProgress, onStderr, command = "ffmpeg" } = options;
  if (signal?.aborted) return Promise.reject(new FfmpegAbortedError());
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    let pending = "";
    let block: string[] = [];
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (chunk: string) => {
      pending += chunk;
      const lines = pending.split("\n");
      pending = lines.pop() ?? "";
      for (const line of lines) {
        block.push(line);
        if (line.startsWith("progress=")) {
          const progress = parseProgressBlock(block);
          block = [];
          if (progress) onProgress?.(progress);
        }
      }
    });
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (chunk: string) => {
      onStderr?.(chunk);
      stderr = (stderr + chunk).slice(-STDERR_TAIL_BYTES);
    });
    // The work is dropped when stopped, so there is nothing for a graceful ffmpeg exit to finish.
    const kill = () => child.kill("SIGKILL");
    signal?.addEventListener("abort", kill, { once: true });
    child.on("error", (error) => {
      signal?.removeEventListener("abort", kill);
      reject(new FfmpegError(`${command} could not start: ${error.message}`, null, ""));
    });
    child.on("close", (code, killedBy) => {
      signal?.removeEventListener("abort", kill);
      if (signal?.aborted) return reject(new FfmpegAbortedError());
      if (code === 0) return resolve();
      const tail = stderr.trim();
      const lastLine = tail.split("\n").at(-1) ?? "";
      reject(
        new FfmpegError(`${command} exited with ${code ?? killedBy}${lastLine ? `: ${lastLine}` : ""}`, code, tail),
      );
    });
  });
}
