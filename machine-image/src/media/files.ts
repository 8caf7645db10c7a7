/** Files in a work directory, as packaging needs them. */
import { createReadStream, createWriteStream } from "node:fs";
import { stat } from "node:fs/promises";
import { pipeline } from "node:stream/promises";

/**
 * An init segment and its media segments, one after the other in one file: a fragmented MP4 that
 * ffmpeg reads whole (to remux the MP4, to measure loudness). One stream for all of them, so the
 * output's listeners do not pile up with the number of segments.
 */
export async function joinFiles(paths: readonly string[], out: string): Promise<string> {
  await pipeline(async function* () {
    for (const path of paths) yield* createReadStream(path);
  }, createWriteStream(out));
  return out;
}

/** Whether ffmpeg wrote `path` (a poster is missing when the source has no frame at its time). */
export const fileExists = (path: string): Promise<boolean> =>
  stat(path).then(
    () => true,
    () => false,
  );
