/**
 * `manifest.json`: the description of a published package (what players and operators read),
 * and the `OutputKeys` a machine reports in its `completed` event.
 */
import type { LoudnessReport, OutputKeys, ProbeSummary, SkippedSubtitle } from "@tcoder/worker/contract";
import { attemptPrefix, manifestKey, packagePaths } from "./layout.ts";

export interface ManifestRendition {
  name: string;
  width: number;
  height: number;
  bandwidth: number;
  averageBandwidth: number;
  codecs: string;
  frameRate?: number;
  videoRange?: "SDR" | "PQ" | "HLG";
  durationSeconds: number;
  segments: number;
  sizeBytes: number;
  playlist: string;
}

/** An alternate audio rendition (`EXT-X-MEDIA TYPE=AUDIO`). */
export interface ManifestAudio {
  name: string;
  label: string;
  language?: string;
  channels: number;
  default: boolean;
  group: "stereo" | "surround";
  bandwidth: number;
  averageBandwidth: number;
  codecs: string;
  durationSeconds: number;
  segments: number;
  sizeBytes: number;
  playlist: string;
}

/** A WebVTT subtitle rendition (`EXT-X-MEDIA TYPE=SUBTITLES`), segmented like the video. */
export interface ManifestSubtitle {
  name: string;
  label: string;
  language?: string;
  default: boolean;
  forced: boolean;
  cues: number;
  segments: number;
  playlist: string;
  /** The same cues as one WebVTT file. */
  vtt: string;
}

export interface Manifest {
  version: 1;
  jobId: string;
  attempt: number;
  preset: string;
  createdAt: string;
  durationSeconds: number;
  probe: ProbeSummary;
  hls?: {
    master: string;
    segmentSeconds: number;
    gopSeconds: number;
    /** Video renditions (each a variant, played with one of the audio groups). */
    renditions: ManifestRendition[];
    audio: ManifestAudio[];
    subtitles: ManifestSubtitle[];
  };
  /** The DASH manifest describing the HLS renditions' CMAF segments. */
  dash?: { manifest: string };
  /** Subtitle streams of the source that could not become WebVTT. */
  skippedSubtitles?: SkippedSubtitle[];
  /** A job with a loudness setting: each audio rendition's loudness before and after normalization. */
  loudness?: LoudnessReport;
  mp4?: { key: string; width: number; height: number; durationSeconds: number; sizeBytes: number };
  poster?: { key: string; width: number; height: number };
  thumbnails?: {
    vtt: string;
    sprite: string;
    intervalSeconds: number;
    count: number;
    width: number;
    height: number;
    columns: number;
  };
  files: { key: string; sizeBytes: number; contentType: string }[];
}

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
