/**
 * Chunked parallel encoding: the same long 1080p source with the full ladder, chunked, on one
 * machine of one CPU and on two machines of one CPU each (the local Fly API pins each machine to
 * its own cores), measured in one run. Also the time from the end of the upload to the first
 * playable segment, and a projection to more machines from the measured task times.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@tcoder/client/node";
import { isTerminal, type Job } from "@tcoder/worker/contract";
import { startLocalStack } from "../src/stack.ts";
import { table } from "./markdown.ts";

export interface ChunkedRun {
  machines: number;
  /** Upload done → completed, seconds. */
  wallSeconds: number;
  /** Upload done → the job reports `playable`, seconds. */
  firstPlayableSeconds: number;
  job: Job;
}

export interface ChunkedResult {
  sourceSeconds: number;
  chunkSeconds: number;
  x264Preset: string;
  runs: ChunkedRun[];
}

async function runOnce(
  source: string,
  machines: number,
  opts: { chunkSeconds: number; x264Preset: string },
): Promise<ChunkedRun> {
  const dir = await mkdtemp(join(tmpdir(), `tcoder-bench-chunked-${machines}-`));
  const stack = await startLocalStack({
    dir: join(dir, "state"),
    maxMachines: machines,
    cronIntervalMs: 500,
    vars: {
      DEFAULT_PRESET: "hls-ladder",
      CHUNK_SECONDS: String(opts.chunkSeconds),
      MACHINE_CPU_KIND: "shared",
      MACHINE_CPUS: "1",
      MACHINE_MEMORY_MB: "2048",
      MACHINE_IDLE_STOP_SECONDS: "300",
    },
    machineEnv: { X264_PRESET: opts.x264Preset },
  });
  try {
    const api = createClient({ baseUrl: stack.cloud.apiUrl, token: stack.cloud.apiToken });
    const uploadedJob = await api.upload(source, { filename: "long.mp4", contentType: "video/mp4" });
    const uploaded = performance.now();
    let firstPlayable = Number.NaN;
    for (;;) {
      const job = await api.getJob(uploadedJob.id);
      const at = (performance.now() - uploaded) / 1000;
      if (job.playable && Number.isNaN(firstPlayable)) firstPlayable = at;
      if (isTerminal(job.state)) {
        if (job.state !== "completed") throw new Error(`chunked bench job ended ${job.state}: ${job.error?.message}`);
        return { machines, wallSeconds: at, firstPlayableSeconds: firstPlayable, job };
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  } finally {
    await stack.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

export async function chunkedBench(
  source: string,
  opts: { sourceSeconds: number; chunkSeconds: number; x264Preset: string },
): Promise<ChunkedResult> {
  const runs: ChunkedRun[] = [];
  for (const machines of [1, 2]) runs.push(await runOnce(source, machines, opts));
  return { ...opts, runs };
}

/** Machine seconds of each task, in queue order (the job's own attempt, which split it, is `split`). */
function taskSeconds(job: Job): { split: number; tasks: { name: string; seconds: number }[]; finalize: number } {
  const attempts = job.usage?.attempts ?? [];
  const ended = (name: string) => attempts.filter((a) => a.task === name).at(-1)?.seconds ?? 0;
  const names = [...new Set(attempts.flatMap((a) => (a.task && a.task !== "finalize" ? [a.task] : [])))];
  const order = (name: string) => (name === "audio" ? -1 : name === "stills" ? 1e6 : Number(name.slice(1)));
  return {
    split: attempts.find((a) => !a.task)?.seconds ?? 0,
    tasks: names.sort((a, b) => order(a) - order(b)).map((name) => ({ name, seconds: ended(name) })),
    finalize: ended("finalize"),
  };
}

/** Wall time of the tasks on `n` machines taking them in queue order, each as soon as it is free. */
export function listScheduleSeconds(tasks: readonly number[], n: number): number {
  const free = Array.from({ length: n }, () => 0);
  for (const seconds of tasks) {
    const next = free.indexOf(Math.min(...free));
    free[next] = (free[next] ?? 0) + seconds;
  }
  return Math.max(...free);
}

export function chunkedSection(r: ChunkedResult): string {
  const [one, two] = r.runs as [ChunkedRun, ChunkedRun];
  const measured = taskSeconds(one.job);
  const taskList = measured.tasks.map((t) => t.seconds);
  const videoTasks = measured.tasks.filter((t) => t.name.startsWith("v"));
  // What does not shrink with more machines: upload event, claim, probe and split, finalize, and
  // the per-task dispatch the one-machine run paid; calibrated so that n = 1 is the measured run.
  const fixed = one.wallSeconds - listScheduleSeconds(taskList, 1);
  const projection = [1, 2, 4, 8, 16].map((n) => {
    const seconds = fixed + listScheduleSeconds(taskList, n);
    return [
      String(n),
      seconds.toFixed(1),
      (seconds / one.wallSeconds).toFixed(2),
      n === 2 ? `${two.wallSeconds.toFixed(1)} measured` : "",
    ];
  });
  return [
    "## Chunked parallel encoding",
    "",
    `A ${r.sourceSeconds} s 1920×1080 30 fps H.264 + AAC source, preset \`hls-ladder\` (1080p/720p/540p/360p), x264 \`${r.x264Preset}\`, \`CHUNK_SECONDS=${r.chunkSeconds}\` (the first chunk is one GOP). Each machine is pinned to its own core (\`guest.cpus = 1\`); the same chunked job runs on one machine, then on two. Times are from the end of the upload. Target: wall ratio ≤ 0.60, first playable ≤ 15 s.`,
    "",
    table(
      ["measured", "1 machine × 1 CPU", "2 machines × 1 CPU", "ratio"],
      [
        [
          "upload done → completed",
          `${one.wallSeconds.toFixed(1)} s`,
          `${two.wallSeconds.toFixed(1)} s`,
          `**${(two.wallSeconds / one.wallSeconds).toFixed(2)}**`,
        ],
        [
          "upload done → first playable segment",
          `${one.firstPlayableSeconds.toFixed(1)} s`,
          `${two.firstPlayableSeconds.toFixed(1)} s`,
          "",
        ],
        [
          "tasks (audio, video chunks, stills, finalize)",
          String(one.job.tasks?.total ?? 0),
          String(two.job.tasks?.total ?? 0),
          "",
        ],
      ],
    ),
    "",
    `Task machine time on one machine: split (download, probe) ${measured.split.toFixed(1)} s; ${measured.tasks
      .map((t) => `${t.name} ${t.seconds.toFixed(1)} s`)
      .join(", ")}; finalize ${measured.finalize.toFixed(1)} s. The ${videoTasks.length} video chunks take ${videoTasks
      .reduce((sum, t) => sum + t.seconds, 0)
      .toFixed(1)} s of it.`,
    "",
    "Projected wall time on more machines: the measured tasks taken in queue order by whichever machine is free, plus the fixed part of the one-machine run (upload event, claim, probe and split, finalize, per-task dispatch).",
    "",
    table(["machines", "projected s", "÷ 1 machine", "check"], projection),
  ].join("\n");
}
