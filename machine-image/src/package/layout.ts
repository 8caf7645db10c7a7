/**
 * Where a package lives in the output bucket, and how each file is served.
 *
 *   outputs/<jobId>/<attempt>/hls/master.m3u8
 *   outputs/<jobId>/<attempt>/manifest.mpd         (DASH, over the same segments)
 *   outputs/<jobId>/<attempt>/hls/<rendition>/playlist.m3u8, init.mp4, seg_00000.m4s …
 *   outputs/<jobId>/<attempt>/video.mp4            (faststart)
 *   outputs/<jobId>/<attempt>/poster.jpg
 *   outputs/<jobId>/<attempt>/thumbnails/sprite.jpg, thumbnails.vtt
 *   outputs/<jobId>/manifest.json                  ← written last
 *
 * Every attempt writes under its own prefix, so a machine killed mid-upload leaves only files no
 * manifest points to; `outputs/<jobId>/manifest.json` exists only once a whole package does.
 * The paths below an attempt and how each file is served are the contract's (`contract/hls.ts`):
 * the API writes captions into a finished package with the same ones.
 */
import { cacheControlFor, contentTypeFor } from "@tcoder/worker/contract";
import { outputPrefixFor } from "@tcoder/worker/state";
import type { UploadItem } from "../storage/s3.ts";

export const outputPrefix = outputPrefixFor;
export const attemptPrefix = (jobId: string, attempt: number) => `${outputPrefixFor(jobId)}${attempt}/`;
export const manifestKey = (jobId: string) => `${outputPrefixFor(jobId)}manifest.json`;

export { cacheControlFor, contentTypeFor, packagePaths } from "@tcoder/worker/contract";

/** A local file to upload under `key`, served with the type and caching its name calls for. */
export const uploadItem = (path: string, key: string): UploadItem => ({
  path,
  key,
  contentType: contentTypeFor(key),
  cacheControl: cacheControlFor(key),
});
