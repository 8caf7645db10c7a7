/**
 * The machine image and container machines: image size (and gzip-compressed, what every new Fly
 * host pulls before the first boot), cold and warm `npm run image:build`, and how long a machine
 * takes from its start request to its first claim as a container vs as a process.
 *
 * The cold build runs in a scratch podman store and cache directory, so it starts from nothing
 * (debootstrap included) without touching the machine's own store or cache, which other work may
 * be using. Part of `npm run bench`; `node --import tsx stacks/local/bench/image.ts` prints the
 * section alone.
 */
import { spawn } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createClient } from "@tcoder/client/node";
import { type RunnerKind, repoRoot, runnerKinds, startLocalStack } from "../src/stack.ts";
import { table } from "./markdown.ts";
import { makeSource } from "./pipeline.ts";

const builder = join(repoRoot, "stacks", "local", "src", "services", "machine-image.ts");

interface BuildReport {
  ref: string;
  sizeBytes: number;
  compressedBytes: number;
  built: boolean;
  seconds: number;
}

export interface ImageBench {
  /** When it ran, and the 1-minute load average before (shared cores slow some runs). */
  ranAt: string;
  loadBefore: number;
  cold: BuildReport;
  warm: BuildReport;
  /** Start request → first claim, seconds, per runner (each sample a stopped machine started again). */
  startToClaim: Record<RunnerKind, number[]>;
}

/** `npm run image:build` as a child process with `env` on top, its JSON report. */
function buildImage(env: Record<string, string>): Promise<BuildReport> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", builder, "--json"], {
      cwd: repoRoot,
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "inherit"],
    });
    let stdout = "";
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.once("error", reject);
    child.once("close", (code) =>
      code === 0 ? resolve(JSON.parse(stdout) as BuildReport) : reject(new Error(`image build exited ${code}`)),
    );
  });
}

/** Cold then warm builds in a scratch podman store and cache. */
async function buildTimes(dir: string): Promise<{ cold: BuildReport; warm: BuildReport }> {
  const scratch = join(dir, "image-cold");
  await mkdir(scratch, { recursive: true });
  const storageConf = join(scratch, "storage.conf");
  await writeFile(
    storageConf,
    `[storage]\ndriver = "overlay"\ngraphroot = "${join(scratch, "storage")}"\nrunroot = "${join(scratch, "run")}"\n`,
  );
  const env = { CONTAINERS_STORAGE_CONF: storageConf, TCODER_CACHE_DIR: join(scratch, "cache") };
  try {
    console.log("machine image: cold build in a scratch store (debootstrap, base images, Dockerfile)…");
    const cold = await buildImage(env);
    console.log("machine image: warm build (inputs unchanged)…");
    const warm = await buildImage(env);
    return { cold, warm };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

/** Start request → first claim for a machine that was stopped, `samples` times, on one stack. */
async function startToClaim(runner: RunnerKind, dir: string, clip: string, samples: number): Promise<number[]> {
  const stack = await startLocalStack({
    dir: join(dir, `start-${runner}`),
    runner,
    maxMachines: 1,
    cronIntervalMs: 500,
    vars: { DEFAULT_PRESET: "mp4-720p", MACHINE_IDLE_STOP_SECONDS: "600" },
    machineEnv: { X264_PRESET: "ultrafast", POLL_MIN_MS: "200", POLL_MAX_MS: "1000" },
  });
  const { cloud } = stack;
  const api = createClient({ baseUrl: cloud.apiUrl, token: cloud.apiToken });
  const app = cloud.settings.FLY_APP_NAME;
  const flyCall = (method: string, path: string, body?: unknown) =>
    fetch(`${cloud.fly.url}/v1/apps/${app}/machines${path}`, {
      method,
      headers: { authorization: `Bearer ${cloud.fly.token}`, "content-type": "application/json" },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
  const seconds: number[] = [];
  try {
    for (let sample = 0; sample < samples; sample++) {
      let job = await api.upload(clip, { filename: "clip.mp4", contentType: "video/mp4" });
      while (job.state !== "completed") {
        if (job.state === "failed" || job.state === "canceled") throw new Error(`bench job ${job.id} ${job.state}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
        job = await api.getJob(job.id);
      }
      const machine = cloud.fly.machines(app).find((m) => m.id === job.machineId);
      const claimedAt = Date.parse(job.startedAt ?? "");
      const requested = machine?.events.find(
        (e) => e.type === "start" && e.status === "requested" && e.timestamp <= claimedAt,
      );
      if (!machine || !requested) throw new Error(`no start request found for the machine of ${job.id}`);
      seconds.push((claimedAt - requested.timestamp) / 1000);
      // Stopped again, so the next job starts it from cold (a new container or process).
      await flyCall("POST", `/${machine.id}/stop`, {});
      await flyCall("GET", `/${machine.id}/wait?state=stopped&instance_id=${machine.instance_id}&timeout=60`);
    }
  } finally {
    await stack.stop();
  }
  return seconds;
}

export async function imageBench(dir: string, samples = 3): Promise<ImageBench> {
  const ranAt = new Date().toISOString();
  const loadBefore = loadavg()[0] ?? 0;
  const { cold, warm } = await buildTimes(dir);
  const clip = await makeSource(join(dir, "start-clip.mp4"), 2, "320x240");
  const starts = {} as Record<RunnerKind, number[]>;
  for (const runner of runnerKinds) {
    console.log(`start → first claim, ${runner} runner…`);
    starts[runner] = await startToClaim(runner, dir, clip, samples);
  }
  return { ranAt, loadBefore, cold, warm, startToClaim: starts };
}

const mb = (bytes: number) => `${(bytes / 1_000_000).toFixed(0)} MB`;
const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
};

/** The markdown section for docs/benchmarks.md. */
export function imageSection(result: ImageBench): string {
  const { cold, warm, startToClaim: starts } = result;
  const startRow = (runner: RunnerKind, what: string) => [
    `start → first claim, ${what}`,
    `${median(starts[runner]).toFixed(2)} s (${starts[runner].map((s) => s.toFixed(2)).join(", ")})`,
  ];
  return [
    "## Machine image and container machines\n",
    "`npm run image:build` builds `machine-image/Dockerfile` with podman (local stand-ins for its base images: debootstrap + this machine's Node). *Cold* starts from an empty podman store and cache; *warm* is the same command right after (a no-op when no input changed in between; here other work edits the sources, so it may rebuild on podman's layer cache). Start → first claim is from the Fly API's start request for a stopped machine to the job's claim, median of the samples in brackets. " +
      `Run: ${result.ranAt}, 1-minute load average ${result.loadBefore.toFixed(2)} before.\n`,
    table(
      ["measured", "value"],
      [
        ["image size (uncompressed, as `podman images`)", mb(cold.sizeBytes)],
        ["image size compressed (gzip layers, what a new Fly host pulls)", mb(cold.compressedBytes)],
        ["`npm run image:build`, cold", `${cold.seconds.toFixed(1)} s`],
        [
          warm.built
            ? "`npm run image:build`, warm (sources changed meanwhile: rebuilt on podman's layer cache)"
            : "`npm run image:build`, warm (inputs unchanged)",
          `${warm.seconds.toFixed(1)} s`,
        ],
        startRow("container", "container runner (podman run of the image)"),
        startRow("process", "process runner (the bundled `main.js` as a Node process)"),
      ],
    ),
  ].join("\n");
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  // Alone, it refreshes its own section of the benchmarks document and leaves the others as they are.
  const outPath = process.env.BENCH_OUT ?? join(repoRoot, "docs", "benchmarks.md");
  const dir = await mkdtemp(join(tmpdir(), "tcoder-bench-image-"));
  try {
    const section = imageSection(await imageBench(dir));
    console.log(`\n${section}`);
    const document = await readFile(outPath, "utf8");
    const start = document.indexOf("## Machine image and container machines");
    const end = start < 0 ? -1 : document.indexOf("\n## ", start + 1);
    const updated =
      start < 0
        ? document.replace("## Reading the numbers", `${section}\n\n## Reading the numbers`)
        : `${document.slice(0, start)}${section}\n${end < 0 ? "" : document.slice(end)}`;
    await writeFile(outPath, updated);
    console.log(`\nwrote ${outPath}`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
