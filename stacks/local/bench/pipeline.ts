/**
 * What the pipeline costs on top of ffmpeg, measured on the local stack with real machine
 * processes. Machines run a `ffmpeg` shim first in their PATH that records each command line and
 * how long it ran, so the overhead ratio compares the pipeline with the very command it ran.
 */
import { chmod, copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createClient, type TcoderClient } from "@tcoder/client/node";
import { type Measured, measure } from "@tcoder/machine-image/bench/measure";
import { type Job, presets } from "@tcoder/worker/contract";
import { type LocalStack, startLocalStack } from "../src/stack.ts";
import { type AppClient, startAppClient } from "./app-client.ts";

/** A lavfi test pattern with audio, encoded fast (the source's own encode is not what is measured). */
export async function makeSource(path: string, seconds: number, size = "1920x1080"): Promise<string> {
  await measure("ffmpeg", [
    ...["-hide_banner", "-nostdin", "-y", "-loglevel", "error"],
    ...["-f", "lavfi", "-i", `testsrc2=size=${size}:rate=30:duration=${seconds}`],
    ...["-f", "lavfi", "-i", `sine=frequency=330:sample_rate=48000:duration=${seconds}`],
    ...["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", path],
  ]);
  return path;
}

interface RecordedCommand {
  args: string[];
  wallSeconds: number;
  /** Epoch ms. */
  startedAt: number;
  endedAt: number;
}

/** The shim: records argv (NUL-separated) and wall time of every ffmpeg a machine runs. */
async function installFfmpegShim(dir: string): Promise<{ binDir: string; logDir: string }> {
  const binDir = join(dir, "bin");
  const logDir = join(dir, "ffmpeg-runs");
  await mkdir(binDir, { recursive: true });
  await mkdir(logDir, { recursive: true });
  const shim = join(binDir, "ffmpeg");
  await writeFile(
    shim,
    `#!/bin/sh
run="$TCODER_BENCH_FFMPEG_LOG/$(date +%s%N)-$$"
printf '%s\\0' "$@" > "$run.args"
start=$(date +%s%N)
/usr/bin/ffmpeg "$@"
code=$?
echo "$start $(date +%s%N)" > "$run.time"
exit $code
`,
  );
  await chmod(shim, 0o755);
  return { binDir, logDir };
}

async function recordedCommands(logDir: string): Promise<RecordedCommand[]> {
  const names = (await readdir(logDir)).filter((n) => n.endsWith(".args")).sort();
  const commands: RecordedCommand[] = [];
  for (const name of names) {
    const args = (await readFile(join(logDir, name), "utf8")).split("\0").slice(0, -1);
    const time = await readFile(join(logDir, name.replace(/\.args$/, ".time")), "utf8").catch(() => "");
    const [start = 0, end = 0] = time.trim().split(" ").map(Number);
    commands.push({ args, wallSeconds: (end - start) / 1e9, startedAt: start / 1e6, endedAt: end / 1e6 });
  }
  return commands;
}

/** The work directory of a job's attempt that a command writes into. */
const workDirOf = (command: RecordedCommand, jobId: string) =>
  command.args.map((a) => new RegExp(`^(.*/${jobId}-\\d+)/`).exec(a)?.[1]).find((dir) => dir !== undefined);

/** The transcode of a job: the ffmpeg run that reads its source (as it downloads) and writes its package. */
const transcodeOf = (commands: RecordedCommand[], jobId: string) =>
  commands.find(
    (c) => workDirOf(c, jobId) !== undefined && (c.args[c.args.indexOf("-i") + 1] ?? "").endsWith("/source"),
  );

export interface BenchStack {
  stack: LocalStack;
  api: TcoderClient;
  /** Uploads as an app would, from its own thread. */
  app: AppClient;
  dir: string;
  commands(): Promise<RecordedCommand[]>;
  stop(): Promise<void>;
}

export async function startBenchStack(opts: {
  name: string;
  maxMachines: number;
  x264Preset: string;
  preset: string;
  cronIntervalMs?: number;
}): Promise<BenchStack> {
  const dir = await mkdtemp(join(tmpdir(), `tcoder-bench-${opts.name}-`));
  const { binDir, logDir } = await installFfmpegShim(dir);
  const stack = await startLocalStack({
    dir: join(dir, "state"),
    maxMachines: opts.maxMachines,
    cronIntervalMs: opts.cronIntervalMs ?? 1_000,
    vars: { DEFAULT_PRESET: opts.preset, MACHINE_IDLE_STOP_SECONDS: "120" },
    machineEnv: {
      X264_PRESET: opts.x264Preset,
      PATH: `${binDir}:${process.env.PATH ?? "/usr/bin:/bin"}`,
      TCODER_BENCH_FFMPEG_LOG: logDir,
    },
  });
  const app = startAppClient(stack.cloud.apiUrl, stack.cloud.apiToken);
  return {
    stack,
    api: createClient({ baseUrl: stack.cloud.apiUrl, token: stack.cloud.apiToken }),
    app,
    dir,
    commands: () => recordedCommands(logDir),
    async stop() {
      await app.close();
      await stack.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export interface Submitted {
  job: Job;
  /** ms from asking for an upload URL to the job's completion (its record's `finishedAt`). */
  endToEndMs: number;
  /** ms from the end of the PUT to the job's completion. */
  afterUploadMs: number;
  /** Epoch ms when the PUT ended. */
  uploadedAt: number;
}

/**
 * Uploads a source and waits for its job the way an app would (the SDK's waitForJob, polling with
 * backoff). The job's end is when its record became completed, not when a poll saw it, so the
 * polling interval neither adds to the measurement nor, polled often, takes cores from the machine.
 */
export async function runJob(bench: BenchStack, path: string, preset?: string): Promise<Submitted> {
  const {
    job: uploadedJob,
    startedAt,
    uploadedAt,
  } = await bench.app.upload(path, {
    filename: "source.mp4",
    contentType: "video/mp4",
    ...(preset ? { preset } : {}),
  });
  const job = await bench.api.waitForJob(uploadedJob.id, { timeout: 30 * 60_000 });
  if (job.state !== "completed") throw new Error(`bench job ${job.id} ended ${job.state}: ${job.error?.message}`);
  const finishedAt = Date.parse(job.finishedAt ?? "");
  return { job, endToEndMs: finishedAt - startedAt, afterUploadMs: finishedAt - uploadedAt, uploadedAt };
}

/** Runs the job's recorded transcode again, alone, on the same source, into a scratch directory. */
export async function replayAlone(bench: BenchStack, jobId: string, source: string): Promise<Measured> {
  const recorded = transcodeOf(await bench.commands(), jobId);
  if (!recorded) throw new Error(`no recorded ffmpeg run for ${jobId}`);
  const attemptDir = workDirOf(recorded, jobId) ?? "";
  const replayDir = join(bench.dir, `replay-${jobId}`);
  await mkdir(replayDir, { recursive: true });
  await copyFile(source, join(replayDir, "source"));
  // Alone, ffmpeg reads the whole file from disk: the pipeline's reading while it downloads is overhead.
  const inputAt = recorded.args.indexOf("-i") + 1;
  const args = recorded.args.map((a, i) =>
    i === inputAt ? join(replayDir, "source") : a.split(attemptDir).join(replayDir),
  );
  for (const arg of args) if (arg.startsWith(replayDir)) await mkdir(dirname(arg), { recursive: true });
  try {
    return await measure("/usr/bin/ffmpeg", args);
  } finally {
    await rm(replayDir, { recursive: true, force: true });
  }
}

export async function transcodeSeconds(bench: BenchStack, jobId: string): Promise<number> {
  return (await transcodeRun(bench, jobId)).wallSeconds;
}

export async function transcodeRun(bench: BenchStack, jobId: string): Promise<RecordedCommand> {
  const recorded = transcodeOf(await bench.commands(), jobId);
  if (!recorded) throw new Error(`no recorded ffmpeg run for ${jobId}`);
  return recorded;
}

/** Where a job's time went, from its record and its recorded transcode (seconds). */
export async function phasesOf(bench: BenchStack, submitted: Submitted) {
  const { job } = submitted;
  const run = await transcodeRun(bench, job.id);
  const at = (iso: string | undefined) => Date.parse(iso ?? "");
  return {
    upload: (submitted.endToEndMs - submitted.afterUploadMs) / 1000,
    uploadedToQueued: (at(job.queuedAt) - submitted.uploadedAt) / 1000,
    queuedToClaimed: (at(job.startedAt) - at(job.queuedAt)) / 1000,
    downloadAndProbe: (run.startedAt - at(job.startedAt)) / 1000,
    ffmpeg: run.wallSeconds,
    publish: (at(job.finishedAt) - run.endedAt) / 1000,
  };
}

export const presetNames = Object.keys(presets);
