/**
 * An init segment and its media segments, one after the other in one file: a fragmented MP4 that
 * ffmpeg reads whole (to remux the MP4, to measure loudness). One stream for all of them, so the
 * output's listeners do not pile up with the number of segments.
 */
import { createReadStream, createWriteStream } from "node:fs";
import { pipeline } from "node:stream/promises";

export async function joinFiles(paths: readonly string[], out: string): Promise<string> {
  await pipeline(async function* () {
    for (const path of paths) yield* createReadStream(path);
  }, createWriteStream(out));
  return out;
}
