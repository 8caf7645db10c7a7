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
 */
import { extname } from "node:path";
import { outputPrefixFor } from "@tcoder/worker/state";

export const outputPrefix = outputPrefixFor;
export const attemptPrefix = (jobId: string, attempt: number) => `${outputPrefixFor(jobId)}${attempt}/`;
export const manifestKey = (jobId: string) => `${outputPrefixFor(jobId)}manifest.json`;

export const packagePaths = {
  hlsMaster: "hls/master.m3u8",
  /** DASH manifest over the same CMAF segments as the HLS renditions. */
  dashManifest: "manifest.mpd",
  renditionPlaylist: (name: string) => `hls/${name}/playlist.m3u8`,
  /** A subtitle rendition as one whole WebVTT file (for the MP4, DASH and downloads). */
  subtitleFile: (name: string) => `subtitles/${name}.vtt`,
  mp4: "video.mp4",
  poster: "poster.jpg",
  thumbnailsSprite: "thumbnails/sprite.jpg",
  thumbnailsVtt: "thumbnails/thumbnails.vtt",
} as const;

const contentTypes: Record<string, string> = {
  ".m3u8": "application/vnd.apple.mpegurl",
  ".mpd": "application/dash+xml",
  ".m4s": "video/iso.segment",
  ".mp4": "video/mp4",
  ".m4a": "audio/mp4",
  ".ts": "video/mp2t",
  ".jpg": "image/jpeg",
  ".vtt": "text/vtt; charset=utf-8",
  ".json": "application/json",
};

export const contentTypeFor = (key: string) => contentTypes[extname(key)] ?? "application/octet-stream";

/** Media under an attempt prefix never changes; playlists and the manifest may be re-published by a retry. */
export const IMMUTABLE = "public, max-age=31536000, immutable";
export const SHORT = "public, max-age=60";
export const MANIFEST_CACHE = "public, max-age=10, must-revalidate";

export const cacheControlFor = (key: string) => {
  const ext = extname(key);
  if (ext === ".json") return MANIFEST_CACHE;
  if (ext === ".m3u8" || ext === ".mpd" || ext === ".vtt") return SHORT;
  return IMMUTABLE;
};
