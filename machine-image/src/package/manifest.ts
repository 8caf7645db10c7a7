/**
 * `manifest.json`: the description of a published package (what players and operators read; its
 * shape is the contract's, since the API rewrites it when captions are added), and the
 * `OutputKeys` a machine reports in its `completed` event.
 */
import type { Manifest, OutputKeys } from "@tcoder/worker/contract";
import { attemptPrefix, manifestKey, packagePaths } from "./layout.ts";

export type { Manifest, ManifestAudio, ManifestRendition, ManifestSubtitle } from "@tcoder/worker/contract";

/** The full key of a package path for this attempt. */
export const packageKey = (jobId: string, attempt: number, path: string) => `${attemptPrefix(jobId, attempt)}${path}`;

export function outputKeysOf(manifest: Manifest): OutputKeys {
  return {
    manifest: manifestKey(manifest.jobId),
    ...(manifest.hls ? { hlsMaster: manifest.hls.master } : {}),
    ...(manifest.dash ? { dashManifest: manifest.dash.manifest } : {}),
    renditions: (manifest.hls?.renditions ?? []).map((r) => ({
      name: r.name,
      width: r.width,
      height: r.height,
      bandwidth: r.bandwidth,
      playlist: r.playlist,
    })),
    audio: (manifest.hls?.audio ?? []).map((a) => ({
      name: a.name,
      label: a.label,
      ...(a.language ? { language: a.language } : {}),
      channels: a.channels,
      default: a.default,
      bandwidth: a.bandwidth,
      playlist: a.playlist,
    })),
    subtitles: (manifest.hls?.subtitles ?? []).map((t) => ({
      name: t.name,
      label: t.label,
      ...(t.language ? { language: t.language } : {}),
      default: t.default,
      forced: t.forced,
      playlist: t.playlist,
      vtt: t.vtt,
    })),
    ...(manifest.skippedSubtitles?.length ? { skippedSubtitles: manifest.skippedSubtitles } : {}),
    ...(manifest.loudness ? { loudness: manifest.loudness } : {}),
    ...(manifest.mp4 ? { mp4: manifest.mp4.key } : {}),
    ...(manifest.poster ? { poster: manifest.poster.key } : {}),
    ...(manifest.thumbnails
      ? { thumbnailsVtt: manifest.thumbnails.vtt, thumbnailsSprite: manifest.thumbnails.sprite }
      : {}),
  };
}

export { packagePaths };
