/**
 * Transcoding presets as data: the API validates `preset` against these names and the
 * machine-image builds its ffmpeg graph from the same table.
 *
 * The default ladder follows Apple's HLS authoring specification for 16:9 content; rungs taller
 * than the source are dropped (never upscale), and the top rung is always kept at source size
 * when the source is smaller than the smallest rung.
 */
export interface Rendition {
  readonly name: string;
  /** Target height for landscape sources (the short side for portrait ones). */
  readonly height: number;
  readonly videoBitrateKbps: number;
  readonly maxrateFactor: number;
  /**
   * `h264`: 8-bit SDR BT.709 for every player (HDR sources are tone-mapped). `hevc`: HEVC Main10
   * that keeps an HDR source's PQ or HLG signalling (`hvc1` in fMP4), for players that show HDR.
   */
  readonly codec: "h264" | "hevc";
  readonly profile: "baseline" | "main" | "high" | "main10";
}

export interface Preset {
  readonly name: string;
  readonly description: string;
  readonly renditions: readonly Rendition[];
  /** Every audio stream gets a stereo (or mono) AAC rendition at this rate. */
  readonly audioBitrateKbps: number;
  /** Surround (5.1 and up) streams also get a 5.1 AAC rendition at this rate; null: stereo only. */
  readonly surroundAudioBitrateKbps: number | null;
  /** Keyframe interval; fixed (no scene-cut keyframes) so renditions align for switching. */
  readonly gopSeconds: number;
  readonly segmentSeconds: number;
  readonly hls: boolean;
  /** The progressive MP4 is encoded at this rung's size (the tallest kept rung if absent). */
  readonly mp4: boolean;
  readonly thumbnails: { readonly intervalSeconds: number; readonly width: number; readonly columns: number } | null;
  readonly poster: boolean;
}

const rung = (
  name: string,
  height: number,
  videoBitrateKbps: number,
  profile: Rendition["profile"] = "high",
): Rendition => ({
  name,
  height,
  videoBitrateKbps,
  maxrateFactor: 1.1,
  codec: "h264",
  profile,
});

/** An HEVC Main10 rung; named `<height>p-hevc` so it never shares a folder with an H.264 rung. */
const hevcRung = (height: number, videoBitrateKbps: number): Rendition => ({
  name: `${height}p-hevc`,
  height,
  videoBitrateKbps,
  maxrateFactor: 1.1,
  codec: "hevc",
  profile: "main10",
});

export const presets = {
  "hls-ladder": {
    name: "hls-ladder",
    description: "Adaptive HLS ladder 1080p/720p/540p/360p, stereo and 5.1 audio, faststart MP4, poster, thumbnails",
    renditions: [
      rung("1080p", 1080, 6000),
      rung("720p", 720, 3000),
      rung("540p", 540, 2000, "main"),
      rung("360p", 360, 800, "main"),
    ],
    audioBitrateKbps: 128,
    surroundAudioBitrateKbps: 384,
    gopSeconds: 2,
    segmentSeconds: 6,
    hls: true,
    mp4: true,
    thumbnails: { intervalSeconds: 5, width: 160, columns: 10 },
    poster: true,
  },
  "hls-small": {
    name: "hls-small",
    description: "Adaptive HLS ladder 540p/360p/234p for mobile-first and previews",
    renditions: [rung("540p", 540, 2000, "main"), rung("360p", 360, 800, "main"), rung("234p", 234, 300, "baseline")],
    audioBitrateKbps: 96,
    surroundAudioBitrateKbps: null,
    gopSeconds: 2,
    segmentSeconds: 6,
    hls: true,
    mp4: true,
    thumbnails: { intervalSeconds: 5, width: 160, columns: 10 },
    poster: true,
  },
  "hls-hdr": {
    name: "hls-hdr",
    description:
      "HEVC Main10 ladder 2160p–360p keeping the source's HDR (PQ or HLG), an H.264 SDR 720p/360p fallback, stereo and 5.1 audio, faststart SDR MP4, poster, thumbnails",
    // Apple's HDR ladder; the H.264 rungs serve players without HEVC or HDR (tone-mapped, BT.709).
    renditions: [
      hevcRung(2160, 12000),
      hevcRung(1440, 7000),
      hevcRung(1080, 4500),
      hevcRung(720, 2300),
      hevcRung(360, 600),
      rung("720p", 720, 3000),
      rung("360p", 360, 800, "main"),
    ],
    audioBitrateKbps: 128,
    surroundAudioBitrateKbps: 384,
    gopSeconds: 2,
    segmentSeconds: 6,
    hls: true,
    mp4: true,
    thumbnails: { intervalSeconds: 5, width: 160, columns: 10 },
    poster: true,
  },
  "mp4-720p": {
    name: "mp4-720p",
    description: "A single faststart 720p MP4 with poster; no HLS",
    renditions: [rung("720p", 720, 3000)],
    audioBitrateKbps: 128,
    surroundAudioBitrateKbps: null,
    gopSeconds: 2,
    segmentSeconds: 6,
    hls: false,
    mp4: true,
    thumbnails: null,
    poster: true,
  },
} as const satisfies Record<string, Preset>;

export type PresetName = keyof typeof presets;
export const presetNames = Object.keys(presets) as [PresetName, ...PresetName[]];
export const isPresetName = (name: string): name is PresetName => Object.hasOwn(presets, name);
