/**
 * EBU R128 loudness normalization with ffmpeg's `loudnorm`, in two passes: measure each audio
 * rendition's source (down-mixed as the rendition will be, since a down-mix changes loudness), then
 * encode it through `loudnorm` given those measurements, so it applies one exact gain (its linear
 * mode) instead of guessing as it goes. The encoded renditions are measured again for the job.
 */
import {
  LOUDNESS_RANGE_LU,
  LOUDNESS_TRUE_PEAK_DBTP,
  type LoudnessMeasurement,
  type LoudnessReport,
} from "@tcoder/worker/contract";
import { runFfmpeg } from "./run-ffmpeg.ts";

/** A pass-1 measurement: what pass 2 needs besides the three published values. */
export interface MeasuredLoudness extends LoudnessMeasurement {
  thresholdLufs: number;
  targetOffsetLu: number;
}

/** What the encode needs: the target and each audio rendition's source measurement, by rendition name. */
export interface LoudnessPlan {
  targetLufs: number;
  input: Map<string, MeasuredLoudness>;
}

/** One audio stream to measure: `stream` is ffmpeg's specifier within `path` (`0:a:1`). */
export interface LoudnessInput {
  path: string;
  stream: string;
  channels: number;
}

/** The layout a rendition's channel count is encoded as (`-ac`), named for `aformat`. */
const layoutOf = (channels: number) => (channels === 1 ? "mono" : channels === 6 ? "5.1" : "stereo");

/** Forces the rendition's channel layout first, so loudnorm hears what the listener will (ffmpeg's down-mix matrix). */
const downMix = (channels: number) => `aformat=channel_layouts=${layoutOf(channels)}`;

const targets = (targetLufs: number) => `I=${targetLufs}:TP=${LOUDNESS_TRUE_PEAK_DBTP}:LRA=${LOUDNESS_RANGE_LU}`;

/** `loudnorm`'s option ranges; a measurement outside them (a near-silent programme) is clamped. */
const clamp = (value: number, min: number, max: number) => Math.min(max, Math.max(min, value)).toFixed(2);

/** The audio filter of a normalized rendition (pass 2). */
export function normalizeFilter(channels: number, targetLufs: number, measured: MeasuredLoudness): string {
  const loudnorm = [
    `loudnorm=${targets(targetLufs)}`,
    `measured_I=${clamp(measured.integratedLufs, -99, 0)}`,
    `measured_TP=${clamp(measured.truePeakDbtp, -99, 99)}`,
    `measured_LRA=${clamp(measured.rangeLu, 0, 99)}`,
    `measured_thresh=${clamp(measured.thresholdLufs, -99, 0)}`,
    `offset=${clamp(measured.targetOffsetLu, -99, 99)}`,
    "linear=true",
  ].join(":");
  return `${downMix(channels)},${loudnorm}`;
}

/**
 * The JSON blocks `loudnorm … print_format=json` writes to the log, in the order of the filters
 * that wrote them (ffmpeg prints them as its graphs close, in no fixed order, each after its
 * `[Parsed_loudnorm_<n> @ …]` tag; `n` is the filter's position in the graph description).
 */
export function parseLoudnormReports(log: string): MeasuredLoudness[] {
  const blocks = [...log.matchAll(/\[Parsed_loudnorm_(\d+) @ [^\]]*\]\s*(\{[^}]*\})/g)]
    .map((match) => ({ position: Number(match[1]), json: JSON.parse(match[2] as string) as Record<string, string> }))
    .sort((a, b) => a.position - b.position);
  return blocks.map(({ json }) => ({
    integratedLufs: Number(json.input_i),
    truePeakDbtp: Number(json.input_tp),
    rangeLu: Number(json.input_lra),
    thresholdLufs: Number(json.input_thresh),
    targetOffsetLu: Number(json.target_offset),
  }));
}

/**
 * Measures every input in one ffmpeg run (each file read once, audio only). A programme with no
 * gated loudness (silence) measures as −∞ and is reported as such (`Number.isFinite` false).
 */
export async function measureLoudness(
  inputs: readonly LoudnessInput[],
  targetLufs: number,
  signal?: AbortSignal,
): Promise<MeasuredLoudness[]> {
  if (inputs.length === 0) return [];
  const paths = [...new Set(inputs.map((i) => i.path))];
  const graph = inputs.map((input, i) => {
    const [, ...rest] = input.stream.split(":");
    const from = `${paths.indexOf(input.path)}:${rest.join(":")}`;
    return `[${from}]${downMix(input.channels)},loudnorm=${targets(targetLufs)}:print_format=json[m${i}]`;
  });
  let log = "";
  await runFfmpeg(
    [
      // loudnorm reports at the info level, so this run does not use `ffmpegQuiet`'s errors-only log.
      ...["-hide_banner", "-nostdin", "-loglevel", "info", "-nostats"],
      ...paths.flatMap((path) => ["-vn", "-sn", "-dn", "-i", path]),
      "-filter_complex",
      graph.join(";"),
      ...inputs.flatMap((_, i) => ["-map", `[m${i}]`, "-f", "null", "-"]),
    ],
    {
      ...(signal ? { signal } : {}),
      onStderr: (chunk) => {
        log += chunk;
      },
    },
  );
  const measured = parseLoudnormReports(log);
  if (measured.length !== inputs.length)
    throw new Error(`loudnorm reported ${measured.length} measurements for ${inputs.length} audio streams`);
  return measured;
}

const published = (m: MeasuredLoudness): LoudnessMeasurement => ({
  integratedLufs: round(m.integratedLufs),
  truePeakDbtp: round(m.truePeakDbtp),
  rangeLu: round(m.rangeLu),
});
const round = (value: number) => Math.round(value * 100) / 100;

/** The job's record: each normalized rendition's source and encoded loudness. */
export function loudnessReport(
  plan: LoudnessPlan,
  renditions: readonly { name: string; channels: number; output: MeasuredLoudness }[],
): LoudnessReport {
  return {
    targetLufs: plan.targetLufs,
    renditions: renditions.flatMap(({ name, channels, output }) => {
      const input = plan.input.get(name);
      // Silence has no loudness to normalize or report (it was encoded as it is).
      if (!input || !Number.isFinite(input.integratedLufs) || !Number.isFinite(output.integratedLufs)) return [];
      return [{ name, channels, input: published(input), output: published(output) }];
    }),
  };
}
