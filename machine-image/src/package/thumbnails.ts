/**
 * Scrub previews: thumbnails every N seconds tiled into one sprite sheet, and a WebVTT track whose
 * cues point into the sheet with `#xywh=` media fragments.
 */
import type { Preset, ProbeSummary } from "@tcoder/worker/contract";
import { ffmpegQuiet, runFfmpeg } from "../media/run-ffmpeg.ts";

/** Past this many thumbnails the interval grows, so a long source keeps a sprite of sane size. */
export const MAX_THUMBNAILS = 600;

export interface ThumbnailPlan {
  width: number;
  height: number;
  intervalSeconds: number;
  columns: number;
}

export function planThumbnails(preset: Preset, probe: ProbeSummary): ThumbnailPlan | null {
  const video = probe.video;
  if (!preset.thumbnails || !video) return null;
  const width = preset.thumbnails.width;
  const height = Math.max(2, 2 * Math.round((width * video.displayHeight) / video.displayWidth / 2));
  const intervalSeconds = Math.max(
    preset.thumbnails.intervalSeconds,
    Math.ceil(probe.durationSeconds / MAX_THUMBNAILS),
  );
  return { width, height, intervalSeconds, columns: preset.thumbnails.columns };
}

export const spriteGrid = (count: number, columns: number) => ({
  columns: Math.max(1, Math.min(columns, count)),
  rows: Math.max(1, Math.ceil(count / columns)),
});

const timestamp = (seconds: number) => {
  const ms = Math.round(seconds * 1000);
  const h = Math.floor(ms / 3_600_000);
  const m = Math.floor((ms % 3_600_000) / 60_000);
  const s = Math.floor((ms % 60_000) / 1000);
  const pad = (n: number, w = 2) => String(n).padStart(w, "0");
  return `${pad(h)}:${pad(m)}:${pad(s)}.${pad(ms % 1000, 3)}`;
};

/** Cue i covers [i·interval, min((i+1)·interval, duration)) and shows tile i of the sheet. */
export function writeThumbnailsVtt(plan: ThumbnailPlan, count: number, durationSeconds: number, spriteUri: string) {
  const { columns } = spriteGrid(count, plan.columns);
  const cues: string[] = [];
  for (let i = 0; i < count; i++) {
    const start = i * plan.intervalSeconds;
    if (start >= durationSeconds) break;
    const end = Math.min((i + 1) * plan.intervalSeconds, durationSeconds);
    const x = (i % columns) * plan.width;
    const y = Math.floor(i / columns) * plan.height;
    cues.push(`${timestamp(start)} --> ${timestamp(end)}\n${spriteUri}#xywh=${x},${y},${plan.width},${plan.height}`);
  }
  return `WEBVTT\n\n${cues.join("\n\n")}\n`;
}

/** Tiles the numbered thumbnails (`t_00000.jpg`, …) into one JPEG. */
export async function buildSprite(
  thumbPattern: string,
  count: number,
  plan: ThumbnailPlan,
  outPath: string,
  signal?: AbortSignal,
): Promise<void> {
  const { columns, rows } = spriteGrid(count, plan.columns);
  await runFfmpeg(
    [
      ...ffmpegQuiet,
      "-framerate",
      "1",
      "-start_number",
      "0",
      "-i",
      thumbPattern,
      "-vf",
      `tile=${columns}x${rows}`,
      "-frames:v",
      "1",
      "-q:v",
      "4",
      outPath,
    ],
    signal ? { signal } : {},
  );
}
