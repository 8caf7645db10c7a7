/**
 * `npm run bench`: what the single-decode ladder buys over one ffmpeg run per rendition, on the
 * same generated 1080p clip in the same run (wall and CPU time), and how fast the ladder encodes
 * relative to real time. Prints a table; nothing here is asserted.
 *
 *   BENCH_SECONDS=6 BENCH_REPEAT=3 BENCH_X264_PRESETS=veryfast,medium npm run bench -w @tcoder/machine-image
 *
 * BENCH_SOURCE=hevc-1440p measures on an HEVC 2560×1440 source instead (decoding costs more, so
 * decoding once matters more); BENCH_JSON=<path> also writes the rows as JSON for a report.
 */
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Preset, presets } from "@tcoder/worker/contract";
import {
  buildSingleRenditionArgs,
  buildTranscodeArgs,
  outputDirs,
  type TranscodeSpec,
  type X264Preset,
} from "../src/media/ffmpeg-args.ts";
import { planLadder } from "../src/media/ladder.ts";
import { probeFile } from "../src/media/probe.ts";
import { clips } from "../test/support/clips.ts";
import { type Measured, measure } from "./measure.ts";

const seconds = Number(process.env.BENCH_SECONDS ?? 5);
const x264Presets = (process.env.BENCH_X264_PRESETS ?? "veryfast").split(",") as X264Preset[];
/** Runs per variant, interleaved; the fastest counts (the cores are shared, noise only adds time). */
const repeats = Math.max(1, Number(process.env.BENCH_REPEAT ?? 2));
const sourceKind = process.env.BENCH_SOURCE === "hevc-1440p" ? "hevc-1440p" : "h264-1080p";

/** An HEVC 1440p30 source with audio (the committed clip helpers make H.264 only). */
function hevc1440(dir: string, durationSeconds: number): Promise<string> {
  const path = join(dir, "hevc-1440p.mp4");
  const args = [
    ...["-hide_banner", "-nostdin", "-y", "-loglevel", "error"],
    ...["-f", "lavfi", "-i", `testsrc2=size=2560x1440:rate=30:duration=${durationSeconds}`],
    ...["-f", "lavfi", "-i", `sine=frequency=440:sample_rate=48000:duration=${durationSeconds}`],
    ...["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error", "-pix_fmt", "yuv420p"],
    ...["-tag:v", "hvc1", "-c:a", "aac", "-shortest", path],
  ];
  return new Promise((resolve, reject) => execFile("ffmpeg", args, (error) => (error ? reject(error) : resolve(path))));
}

const fastest = (runs: Measured[]): Measured =>
  runs.reduce((best, r) => (r.wallSeconds < best.wallSeconds ? r : best), runs[0] as Measured);

const sum = (runs: Measured[]): Measured => ({
  wallSeconds: runs.reduce((s, r) => s + r.wallSeconds, 0),
  cpuSeconds: runs.reduce((s, r) => s + r.cpuSeconds, 0),
});

async function main() {
  const dir = await mkdtemp(join(tmpdir(), "tcoder-bench-"));
  try {
    const sourceLabel = sourceKind === "hevc-1440p" ? "HEVC 2560×1440" : "H.264 1920×1080";
    console.log(`generating a ${seconds} s ${sourceLabel} 30 fps clip with audio…`);
    const source = sourceKind === "hevc-1440p" ? await hevc1440(dir, seconds) : await clips.landscape1080(dir, seconds);
    const probed = await probeFile(source, 0, { maxDurationSeconds: 1e6, maxPixels: 1e9 });
    if (!probed.ok) throw new Error(probed.message);
    // The ladder alone: poster and thumbnails would only flatter the single-decode side.
    const preset: Preset = { ...presets["hls-ladder"], poster: false, thumbnails: null };
    const plan = planLadder(preset, probed.probe);
    const rows: string[][] = [];

    for (const x264Preset of x264Presets) {
      const spec = (workDir: string): TranscodeSpec => ({
        inputPath: source,
        workDir,
        preset,
        plan,
        durationSeconds: probed.probe.durationSeconds,
        x264Preset,
        thumbnail: null,
      });
      const single = spec(join(dir, `single-${x264Preset}`));
      const separate = spec(join(dir, `separate-${x264Preset}`));
      for (const d of [...outputDirs(single), ...outputDirs(separate)]) await mkdir(d, { recursive: true });
      const ladderRuns: Measured[] = [];
      const separateRuns: Measured[] = [];
      for (let run = 0; run < repeats; run++) {
        ladderRuns.push(
          await measure(
            "ffmpeg",
            buildTranscodeArgs(single).filter((a) => a !== "pipe:1" && a !== "-progress"),
          ),
        );
        const perRendition: Measured[] = [];
        for (let i = 0; i < plan.renditions.length; i++)
          perRendition.push(await measure("ffmpeg", buildSingleRenditionArgs(separate, i)));
        separateRuns.push(sum(perRendition));
      }
      const ladder = fastest(ladderRuns);
      const separateTotal = fastest(separateRuns);

      const speed = (m: Measured) => `${(probed.probe.durationSeconds / m.wallSeconds).toFixed(2)}×`;
      rows.push(
        [
          x264Preset,
          "single decode: 1 ffmpeg, split+scale ×4",
          ladder.wallSeconds.toFixed(2),
          ladder.cpuSeconds.toFixed(2),
          speed(ladder),
        ],
        [
          x264Preset,
          `one ffmpeg per rendition (×${plan.renditions.length})`,
          separateTotal.wallSeconds.toFixed(2),
          separateTotal.cpuSeconds.toFixed(2),
          speed(separateTotal),
        ],
        [
          x264Preset,
          "ratio per-rendition ÷ single decode",
          `${(separateTotal.wallSeconds / ladder.wallSeconds).toFixed(2)}×`,
          `${(separateTotal.cpuSeconds / ladder.cpuSeconds).toFixed(2)}×`,
          "",
        ],
      );
    }

    const header = ["x264", "variant", "wall s", "cpu s", "speed (× real time)"];
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
    const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(" | ")} |`;
    console.log(
      `\nHLS ladder ${plan.renditions.map((r) => `${r.width}x${r.height}`).join(", ")} from ${seconds} s of ${sourceLabel} 30 fps + AAC (best of ${repeats})\n`,
    );
    console.log(line(header));
    console.log(`|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`);
    for (const row of rows) console.log(line(row));
    if (process.env.BENCH_JSON) {
      const ladder = plan.renditions.map((r) => `${r.width}x${r.height}`);
      await writeFile(
        process.env.BENCH_JSON,
        JSON.stringify({ source: sourceLabel, seconds, repeats, ladder, header, rows }),
      );
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
