/**
 * `npm run bench`: every benchmark side by side on this machine, printed and written to
 * docs/benchmarks.md. Nothing is asserted; ratios are measured in the same run.
 *
 * 1. The machine-image's ladder bench (single decode vs one ffmpeg per rendition), on an H.264
 *    1080p source and on an HEVC 1440p source.
 * 2. Pipeline overhead: a 1080p clip through the local stack ÷ the same ffmpeg command alone.
 * 3. Control-plane costs per job: Redis commands (at the bridge), Fly API calls, queue → claim.
 * 4. Encode speed (× real time) per preset.
 * 5. The machine image: size, compressed size, cold and warm build, container vs process start → claim.
 *
 * Knobs: BENCH_PIPELINE_SECONDS (60), BENCH_PIPELINE_PRESET (hls-small), BENCH_X264_PRESET
 * (veryfast), BENCH_LADDER_SECONDS (5), BENCH_REPEAT (2), BENCH_SPEED_SECONDS (10), BENCH_JOBS (8),
 * BENCH_OUT (docs/benchmarks.md).
 */
import { execFile, spawn } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { cpus, loadavg, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { repoRoot } from "../src/stack.ts";
import { imageBench, imageSection } from "./image.ts";
import { table } from "./markdown.ts";
import {
  makeSource,
  phasesOf,
  presetNames,
  replayAlone,
  runJob,
  startBenchStack,
  transcodeSeconds,
} from "./pipeline.ts";

const env = process.env;
const pipelineSeconds = Number(env.BENCH_PIPELINE_SECONDS ?? 60);
const pipelinePreset = env.BENCH_PIPELINE_PRESET ?? "hls-small";
const x264Preset = env.BENCH_X264_PRESET ?? "veryfast";
const ladderSeconds = Number(env.BENCH_LADDER_SECONDS ?? 5);
const repeats = Number(env.BENCH_REPEAT ?? 2);
const speedSeconds = Number(env.BENCH_SPEED_SECONDS ?? 10);
const costJobs = Number(env.BENCH_JOBS ?? 8);
const outPath = env.BENCH_OUT ?? join(repoRoot, "docs", "benchmarks.md");

interface LadderResult {
  source: string;
  seconds: number;
  repeats: number;
  ladder: string[];
  header: string[];
  rows: string[][];
}

const percentile = (values: number[], p: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? Number.NaN;
};
const fixed = (n: number, digits = 2) => n.toFixed(digits);

async function ladderBench(source: "h264-1080p" | "hevc-1440p", dir: string): Promise<LadderResult> {
  const json = join(dir, `ladder-${source}.json`);
  await new Promise<void>((resolve, reject) => {
    const child = spawn("npm", ["run", "-s", "bench", "-w", "@tcoder/machine-image"], {
      cwd: repoRoot,
      stdio: "inherit",
      env: {
        ...env,
        BENCH_SOURCE: source,
        BENCH_SECONDS: String(ladderSeconds),
        BENCH_REPEAT: String(repeats),
        BENCH_X264_PRESETS: x264Preset,
        BENCH_JSON: json,
      },
    });
    child.on("close", (code) => (code === 0 ? resolve() : reject(new Error(`ladder bench exited ${code}`))));
  });
  return JSON.parse(await readFile(json, "utf8")) as LadderResult;
}

async function machineDescription(): Promise<string> {
  const run = promisify(execFile);
  const ffmpeg = (await run("ffmpeg", ["-version"])).stdout.split("\n")[0]?.split(" Copyright")[0] ?? "ffmpeg";
  const cpu = cpus();
  return `${cpu.length} × ${cpu[0]?.model.trim() ?? "unknown CPU"}, ${Math.round(totalmem() / 2 ** 30)} GiB RAM, Node ${process.version}, ${ffmpeg}`;
}

async function main() {
  const dir = await mkdtemp(join(tmpdir(), "tcoder-bench-report-"));
  const loadBefore = loadavg()[0] ?? 0;
  const sections: string[] = [];
  const say = (text: string) => {
    console.log(`\n${text}`);
    sections.push(text);
  };
  try {
    // 1. Single decode vs one ffmpeg per rendition.
    const ladders = [await ladderBench("h264-1080p", dir), await ladderBench("hevc-1440p", dir)];
    const ratioRows = ladders.map((l) => {
      const ratio = l.rows.find((r) => r[1]?.startsWith("ratio")) ?? [];
      const single = l.rows.find((r) => r[1]?.startsWith("single")) ?? [];
      const separate = l.rows.find((r) => r[1]?.startsWith("one ffmpeg")) ?? [];
      return [
        `${l.source}, ${l.seconds} s`,
        `${single[2]} / ${single[3]}`,
        `${separate[2]} / ${separate[3]}`,
        ratio[2] ?? "",
        ratio[3] ?? "",
      ];
    });
    say(
      [
        `## Single-decode ladder vs one ffmpeg run per rendition\n`,
        `HLS ladder ${ladders[0]?.ladder.join(", ")}, x264 \`${x264Preset}\`, best of ${repeats}. Ratio > 1 means the single decode is cheaper.\n`,
        table(
          ["source", "single decode wall / cpu s", "per rendition wall / cpu s", "wall ratio", "CPU ratio"],
          ratioRows,
        ),
      ].join("\n"),
    );

    // 2. Pipeline overhead and 4. encode speed per preset, on one stack with one machine.
    const overheadStack = await startBenchStack({
      name: "overhead",
      maxMachines: 1,
      x264Preset,
      preset: pipelinePreset,
      // The per-preset jobs come one after another to the same idle machine.
      pollMaxMs: 1_000,
    });
    let overheadRows: string[][];
    let fixedCosts = "";
    const speedRows: string[][] = [];
    try {
      console.log(`\ngenerating a ${pipelineSeconds} s 1920×1080 30 fps source…`);
      const source = await makeSource(join(dir, "pipeline.mp4"), pipelineSeconds);
      console.log("through the local stack, cold (the machine is created for it)…");
      const cold = await runJob(overheadStack, source);
      console.log("through the local stack, warm (the same machine, idle)…");
      const warm = await runJob(overheadStack, source);
      console.log("the same ffmpeg command alone…");
      // Best of `repeats`: shared cores only ever add time.
      let alone = await replayAlone(overheadStack, warm.job.id, source);
      for (let run = 1; run < repeats; run++) {
        const again = await replayAlone(overheadStack, warm.job.id, source);
        if (again.wallSeconds < alone.wallSeconds) alone = again;
      }
      const ratio = (seconds: number) => fixed(seconds / alone.wallSeconds);
      overheadRows = [
        [
          "ffmpeg alone (the machine's exact command)",
          fixed(alone.wallSeconds),
          "1.00",
          fixed(alone.wallSeconds),
          "1.00",
        ],
      ];
      const phases = [await phasesOf(overheadStack, cold), await phasesOf(overheadStack, warm)];
      const [c, w] = phases as [(typeof phases)[number], (typeof phases)[number]];
      const coldFixed = c.upload + c.uploadedToQueued + c.queuedToClaimed + c.downloadAndProbe + c.publish;
      const coldRatio = cold.endToEndMs / 1000 / alone.wallSeconds;
      fixedCosts = `In this run they add up to ${fixed(coldFixed, 1)} s against ${fixed(alone.wallSeconds, 1)} s of ffmpeg alone, and the end-to-end ratio is ${fixed(coldRatio)}: the 1.15 target is ${coldRatio <= 1.15 ? "met" : "not met"} on this machine.`;
      const row = (label: string, coldSeconds: number, warmSeconds: number) => [
        label,
        fixed(coldSeconds),
        ratio(coldSeconds),
        fixed(warmSeconds),
        ratio(warmSeconds),
      ];
      overheadRows.push(
        row("  upload (PUT to the store)", c.upload, w.upload),
        row("  upload done → queued (R2 event, queue batching)", c.uploadedToQueued, w.uploadedToQueued),
        row("  queued → claimed (machine boot when cold)", c.queuedToClaimed, w.queuedToClaimed),
        row("  claimed → ffmpeg starts (download, probe)", c.downloadAndProbe, w.downloadAndProbe),
        row("  ffmpeg inside the pipeline", c.ffmpeg, w.ffmpeg),
        row("  ffmpeg ends → completed (package, upload, publish)", c.publish, w.publish),
        row("pipeline: after upload → completed", cold.afterUploadMs / 1000, warm.afterUploadMs / 1000),
        [
          "**pipeline: request upload URL → completed**",
          fixed(cold.endToEndMs / 1000),
          `**${ratio(cold.endToEndMs / 1000)}**`,
          fixed(warm.endToEndMs / 1000),
          `**${ratio(warm.endToEndMs / 1000)}**`,
        ],
      );

      const speedSource = await makeSource(join(dir, "speed.mp4"), speedSeconds);
      for (const preset of presetNames) {
        console.log(`encode speed: ${preset}…`);
        const { job } = await runJob(overheadStack, speedSource, preset);
        const seconds = await transcodeSeconds(overheadStack, job.id);
        speedRows.push([preset, x264Preset, fixed(seconds), `${fixed(speedSeconds / seconds)}×`]);
      }
    } finally {
      await overheadStack.stop();
    }
    say(
      [
        `## Pipeline overhead\n`,
        `A ${pipelineSeconds} s 1920×1080 30 fps H.264 + AAC clip, preset \`${pipelinePreset}\`, x264 \`${x264Preset}\`, one machine: *cold* is the first job (the machine is created for it and boots), *warm* the same clip again on the now idle machine. The indented lines are where the time went (from the job record and the recorded ffmpeg run). Target for the last line: ≤ 1.15.\n`,
        table(["measured", "cold s", "÷ ffmpeg alone", "warm s", "÷ ffmpeg alone"], overheadRows),
      ].join("\n"),
    );

    // 3. Control-plane costs per job.
    const costStack = await startBenchStack({
      name: "costs",
      maxMachines: 2,
      x264Preset: "ultrafast",
      preset: "mp4-720p",
    });
    let costRows: string[][];
    try {
      const tiny = await makeSource(join(dir, "tiny.mp4"), 2, "320x240");
      const { cloud } = costStack.stack;
      const commandsBefore = cloud.upstash.commandCount();
      const flyBefore = cloud.fly.totalCalls();
      const started = performance.now();
      const results = await Promise.all(
        Array.from({ length: costJobs }, () => runJob(costStack, tiny, undefined, 250)),
      );
      const wallSeconds = (performance.now() - started) / 1000;
      const commands = cloud.upstash.commandCount() - commandsBefore;
      const flyCalls = cloud.fly.totalCalls() - flyBefore;
      const claimMs = results.map((r) => Date.parse(r.job.startedAt ?? "") - Date.parse(r.job.queuedAt ?? ""));
      costRows = [
        ["Redis commands per job (bridge count ÷ jobs, everything included)", fixed(commands / costJobs, 1)],
        ["Fly API calls per job", fixed(flyCalls / costJobs, 2)],
        ["queue → claim p50", `${fixed(percentile(claimMs, 50) / 1000)} s`],
        ["queue → claim p95", `${fixed(percentile(claimMs, 95) / 1000)} s`],
        ["jobs / minute", fixed((costJobs / wallSeconds) * 60, 1)],
      ];
    } finally {
      await costStack.stop();
    }
    say(
      [
        `## Control-plane costs\n`,
        `${costJobs} clips of 2 s 320×240 submitted at once, cap 2 machines, preset \`mp4-720p\`, x264 \`ultrafast\`, local cron every 1 s; counts include the cron, admission, the API polls of this run (every 250 ms per job) and the machines' idle polling while the run lasted.\n`,
        table(["measured", "value"], costRows),
      ].join("\n"),
    );
    say(
      [
        `## Encode speed per preset\n`,
        `The machine's transcode (the single ffmpeg run) of a ${speedSeconds} s 1920×1080 30 fps clip, timed inside the pipeline.\n`,
        table(["preset", "x264", "ffmpeg wall s", "speed (× real time)"], speedRows),
      ].join("\n"),
    );

    // 5. The machine image and container machines.
    say(imageSection(await imageBench(dir)));

    const document = [
      "# Benchmarks",
      "",
      "Written by `npm run bench` (stacks/local/bench/report.ts); every ratio compares runs made in the same session on the same machine. Numbers move with load: the cores may be shared.",
      "",
      `Machine: ${await machineDescription()}. Run: ${new Date().toISOString()}; 1-minute load average ${fixed(loadBefore)} before, ${fixed(loadavg()[0] ?? 0)} after (other work on the same cores slows some runs and not others).`,
      "",
      ...sections.flatMap((s) => [s, ""]),
      "## Reading the numbers",
      "",
      `- The pipeline's fixed costs are a few seconds whatever the clip: the upload event waits for the uploads queue's batch window (\`maxBatchTimeoutSeconds\` in \`worker/src/bindings.ts\`, 2 s), the machine boots (locally \`node --import tsx\`, in the image a bundled \`node dist/main.js\`), downloads and probes the source, then uploads and publishes the package. ${fixedCosts} A shorter batch window and a faster machine (ffmpeg weighs less with more cores, \`MACHINE_CPUS\`) both shrink the overhead.`,
      '- "ffmpeg inside the pipeline" vs "ffmpeg alone" is the same command line (recorded by a shim in the machines\' PATH and replayed). On 2 shared cores the machine\'s ffmpeg competes with workerd, redis-server, the local cron and the bench\'s own polling, which the lone run does not.',
      "- Redis commands per job include everything the run caused: the API polls of the bench client, the 1 s local cron and idle machines polling the queue. Fly API calls per job fall below 1 when one machine serves several jobs.",
      "- The machine image is mostly Debian's ffmpeg and the libraries it links (x264/x265, AV1 and VP8/9 codecs, filters); Node is ~100 MB of it. The runtime stage leaves out npm, yarn and corepack (only the `node` binary is copied from the builder) and Mesa's DRI drivers with the LLVM and Z3 they link (~160 MB that only GPU work ever loads): the same Dockerfile built here gave 943 MB before. The cold build is mostly `apt-get install ffmpeg` and `npm ci` in the builder; an edit of `machine-image/src` rebuilds only the bundle and the last `COPY` from podman's layer cache. A container machine starts about as fast as a process-runner machine: the image runs the bundled `main.js`, which skips loading TypeScript.",
      "",
    ].join("\n");
    await writeFile(outPath, document);
    console.log(`\nwrote ${outPath}`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
