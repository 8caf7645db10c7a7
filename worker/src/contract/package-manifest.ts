/**
 * `manifest.json`, the description of a published package at `outputs/<jobId>/manifest.json`:
 * what players, operators and `tcoder transcode --out` read. A machine writes it last, once the
 * whole package is up; the API rewrites its subtitles and files when captions are added to or
 * removed from a finished job.
 */
import type { ProbeSummary, SkippedSubtitle } from "./job.ts";
import type { LoudnessReport } from "./loudness.ts";

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
