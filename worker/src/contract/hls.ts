/**
 * The parts of an HLS package both sides write: media playlists as data, the master playlist, and
 * where each file of a package lives. Machines publish packages with them; the API republishes a
 * finished job's master playlist with them when captions are added or removed.
 */

import { extensionOf } from "./media-types.ts";

export interface MediaPlaylist {
  /** The init segment (EXT-X-MAP URI), relative to the playlist. */
  initSegment?: string;
  segments: { uri: string; durationSeconds: number }[];
  durationSeconds: number;
}

export function parseMediaPlaylist(text: string): MediaPlaylist {
  const segments: MediaPlaylist["segments"] = [];
  let initSegment: string | undefined;
  let pendingDuration: number | null = null;
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line.startsWith("#EXT-X-MAP:")) initSegment = /URI="([^"]+)"/.exec(line)?.[1];
    else if (line.startsWith("#EXTINF:")) pendingDuration = Number.parseFloat(line.slice("#EXTINF:".length));
    else if (line && !line.startsWith("#") && pendingDuration !== null) {
      segments.push({ uri: line, durationSeconds: pendingDuration });
      pendingDuration = null;
    }
  }
  const durationSeconds = segments.reduce((sum, s) => sum + s.durationSeconds, 0);
  return { ...(initSegment ? { initSegment } : {}), segments, durationSeconds };
}

/** A media segment to list: `map` (EXT-X-MAP) names the init segment of it and the segments after it. */
export interface ListedSegment {
  uri: string;
  durationSeconds: number;
  map?: string;
}

/**
 * A media playlist. `EVENT` (still growing: segments are only ever appended) or `VOD`, with
 * `#EXT-X-ENDLIST` once the list is complete. The target duration must not change while a playlist
 * grows, so it is given (the preset's segment length) and only raised by a longer segment.
 */
export function writeMediaPlaylist(p: {
  segments: readonly ListedSegment[];
  type: "EVENT" | "VOD";
  ended: boolean;
  targetDurationSeconds: number;
}): string {
  const target = Math.max(
    Math.round(p.targetDurationSeconds),
    ...p.segments.map((segment) => Math.round(segment.durationSeconds)),
  );
  const lines = [
    "#EXTM3U",
    "#EXT-X-VERSION:7",
    `#EXT-X-TARGETDURATION:${target}`,
    "#EXT-X-MEDIA-SEQUENCE:0",
    `#EXT-X-PLAYLIST-TYPE:${p.type}`,
    "#EXT-X-INDEPENDENT-SEGMENTS",
  ];
  for (const segment of p.segments) {
    if (segment.map) lines.push(`#EXT-X-MAP:URI=${quoted(segment.map)}`);
    lines.push(`#EXTINF:${segment.durationSeconds.toFixed(6)},`, segment.uri);
  }
  if (p.ended) lines.push("#EXT-X-ENDLIST");
  return `${lines.join("\n")}\n`;
}

export interface VariantStream {
  uri: string;
  bandwidth: number;
  averageBandwidth: number;
  codecs: string[];
  resolution?: { width: number; height: number };
  frameRate?: number;
  videoRange?: "SDR" | "PQ" | "HLG";
  /** GROUP-ID of the alternate audio renditions this variant plays with. */
  audioGroup?: string;
  /** GROUP-ID of the subtitle renditions offered with this variant. */
  subtitlesGroup?: string;
}

/** An alternate rendition (`EXT-X-MEDIA`). */
export interface MediaRendition {
  type: "AUDIO" | "SUBTITLES";
  groupId: string;
  name: string;
  language?: string;
  default: boolean;
  /** Subtitles only: shown even when the viewer chose none (foreign-language dialog). */
  forced?: boolean;
  channels?: number;
  uri: string;
}

/** The GROUP-ID every subtitle rendition of a package shares. */
export const SUBTITLES_GROUP = "subs";

// A quoted-string may hold neither a double quote nor a line break (RFC 8216 §4.2).
const quoted = (value: string) => `"${value.replace(/["\r\n]/g, "'")}"`;

const mediaLine = (m: MediaRendition) =>
  `#EXT-X-MEDIA:${[
    `TYPE=${m.type}`,
    `GROUP-ID=${quoted(m.groupId)}`,
    `NAME=${quoted(m.name)}`,
    ...(m.language ? [`LANGUAGE=${quoted(m.language)}`] : []),
    `DEFAULT=${m.default ? "YES" : "NO"}`,
    "AUTOSELECT=YES",
    ...(m.type === "SUBTITLES" ? [`FORCED=${m.forced ? "YES" : "NO"}`] : []),
    ...(m.channels ? [`CHANNELS=${quoted(String(m.channels))}`] : []),
    `URI=${quoted(m.uri)}`,
  ].join(",")}`;

export function writeMasterPlaylist(variants: readonly VariantStream[], media: readonly MediaRendition[] = []): string {
  const lines = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-INDEPENDENT-SEGMENTS", ...media.map(mediaLine)];
  for (const v of [...variants].sort((a, b) => b.bandwidth - a.bandwidth)) {
    const attributes = [
      `BANDWIDTH=${v.bandwidth}`,
      `AVERAGE-BANDWIDTH=${v.averageBandwidth}`,
      ...(v.resolution ? [`RESOLUTION=${v.resolution.width}x${v.resolution.height}`] : []),
      `CODECS="${v.codecs.join(",")}"`,
      ...(v.frameRate ? [`FRAME-RATE=${v.frameRate.toFixed(3)}`] : []),
      ...(v.videoRange ? [`VIDEO-RANGE=${v.videoRange}`] : []),
      ...(v.audioGroup ? [`AUDIO=${quoted(v.audioGroup)}`] : []),
      ...(v.subtitlesGroup ? [`SUBTITLES=${quoted(v.subtitlesGroup)}`] : []),
    ];
    lines.push(`#EXT-X-STREAM-INF:${attributes.join(",")}`, v.uri);
  }
  return `${lines.join("\n")}\n`;
}

/**
 * A published master playlist with its subtitle renditions replaced by `subtitles` (all of them,
 * in order), every variant naming the subtitles group while there is one: what the API writes when
 * captions are added to or removed from a finished job. Everything else is kept as it was.
 */
export function withSubtitleRenditions(master: string, subtitles: readonly MediaRendition[]): string {
  const lines = master.replace(/\r\n?/g, "\n").trimEnd().split("\n");
  const isSubtitleMedia = (line: string) =>
    line.startsWith("#EXT-X-MEDIA:") && /(^|[:,])TYPE=SUBTITLES(,|$)/.test(line);
  const kept = lines.filter((line) => !isSubtitleMedia(line));
  const out = kept.map((line) => {
    if (!line.startsWith("#EXT-X-STREAM-INF:")) return line;
    // The writer puts SUBTITLES= after the other attributes.
    const bare = line.replace(/,SUBTITLES="[^"]*"/, "");
    return subtitles.length > 0 ? `${bare},SUBTITLES=${quoted(SUBTITLES_GROUP)}` : bare;
  });
  // After the other renditions, before the first variant (which may reference them).
  const lastMedia = out.findLastIndex((line) => line.startsWith("#EXT-X-MEDIA:"));
  const firstVariant = out.findIndex((line) => line.startsWith("#EXT-X-STREAM-INF:"));
  const at = lastMedia >= 0 ? lastMedia + 1 : firstVariant >= 0 ? firstVariant : out.length;
  out.splice(at, 0, ...subtitles.map(mediaLine));
  return `${out.join("\n")}\n`;
}

/** Where each file of a package lives, below its attempt's prefix (`outputs/<jobId>/<attempt>/`). */
export const packagePaths = {
  hlsMaster: "hls/master.m3u8",
  /** DASH manifest over the same CMAF segments as the HLS renditions. */
  dashManifest: "manifest.mpd",
  renditionPlaylist: (name: string) => `hls/${name}/playlist.m3u8`,
  /** A file next to a rendition's playlist (its segments). */
  renditionFile: (name: string, file: string) => `hls/${name}/${file}`,
  /** A subtitle rendition as one whole WebVTT file (for the MP4, DASH and downloads). */
  subtitleFile: (name: string) => `subtitles/${name}.vtt`,
  mp4: "video.mp4",
  poster: "poster.jpg",
  thumbnailsSprite: "thumbnails/sprite.jpg",
  thumbnailsVtt: "thumbnails/thumbnails.vtt",
} as const;

/** Media under an attempt prefix never changes; playlists and the manifest may be re-published (a retry, captions). */
const IMMUTABLE = "public, max-age=31536000, immutable";
const SHORT = "public, max-age=60";
const MANIFEST_CACHE = "public, max-age=10, must-revalidate";

export const cacheControlFor = (key: string) => {
  const ext = extensionOf(key);
  if (ext === ".json") return MANIFEST_CACHE;
  if (ext === ".m3u8" || ext === ".mpd" || ext === ".vtt") return SHORT;
  return IMMUTABLE;
};
