/**
 * WebVTT subtitle renditions for HLS: a whole WebVTT (or SubRip) document, cut into segments on
 * the video's segment boundaries (a cue that spans a boundary is repeated in both segments, as
 * RFC 8216 §3.5 expects), each segment mapped onto the media timeline that starts at zero. Machines
 * cut the source's subtitles with it; the API cuts captions added to a finished job the same way.
 */

/** The largest captions file a client may add to a job. A feature film's SubRip is ~100 KB; this leaves room for long, verbose ones. */
export const MAX_CAPTIONS_BYTES = 1024 * 1024;

export interface Cue {
  startSeconds: number;
  endSeconds: number;
  /** Settings after the timing (`align:start …`) and the payload lines, as written. */
  settings: string;
  text: string;
}

const TIMING = /^(?:(\d+):)?(\d{1,2}):(\d{2})[.,](\d{3})\s+-->\s+(?:(\d+):)?(\d{1,2}):(\d{2})[.,](\d{3})(.*)$/;

const seconds = (h: string | undefined, m: string, s: string, ms: string) =>
  Number(h ?? 0) * 3600 + Number(m) * 60 + Number(s) + Number(ms) / 1000;

/** The name of a subtitle rendition's `index`th segment, next to its media playlist. */
export const subtitleSegmentName = (index: number) => `seg_${String(index).padStart(5, "0")}.vtt`;

/**
 * What a captions file is: WebVTT (its `WEBVTT` signature line), SubRip (numbered cues with comma
 * timings), or neither (null).
 */
export function captionsFormat(text: string): "webvtt" | "subrip" | null {
  const body = text.replace(/^\uFEFF/, "").replace(/\r\n?/g, "\n");
  if (/^WEBVTT(?:[ \t].*)?(?:\n|$)/.test(body)) return "webvtt";
  const first = body.trimStart().split("\n");
  if (
    /^\d+\s*$/.test(first[0] ?? "") &&
    /^\d{1,2}:\d{2}:\d{2},\d{3}\s+-->\s+\d{1,2}:\d{2}:\d{2},\d{3}/.test(first[1] ?? "")
  )
    return "subrip";
  return null;
}

/**
 * The cues of a captions file a client sends (the API's body, the CLI's --captions), or the problem
 * saying why there are none: it must be UTF-8, WebVTT or SubRip, and hold at least one cue.
 */
export function readCaptions(bytes: Uint8Array): { cues: Cue[] } | { problem: string } {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(bytes);
  } catch {
    return { problem: "captions must be UTF-8 text" };
  }
  const format = captionsFormat(text);
  if (!format)
    return {
      problem: "not a WebVTT file (WEBVTT first line) or a SubRip file (numbered cues with 00:00:00,000 timings)",
    };
  const cues = parseCues(text);
  if (cues.length === 0) return { problem: `the ${format} file has no cues` };
  return { cues };
}

/** Cues of a WebVTT (or SubRip: the same cue shape with comma decimals) document, in order. */
export function parseCues(text: string): Cue[] {
  const cues: Cue[] = [];
  for (const block of text.replace(/\r\n?/g, "\n").split(/\n{2,}/)) {
    const lines = block.split("\n");
    const at = lines.findIndex((l) => TIMING.test(l.trim()));
    if (at < 0) continue;
    const m = TIMING.exec((lines[at] as string).trim()) as RegExpExecArray;
    const start = seconds(m[1], m[2] as string, m[3] as string, m[4] as string);
    const end = seconds(m[5], m[6] as string, m[7] as string, m[8] as string);
    const payload = lines
      .slice(at + 1)
      .join("\n")
      .trim();
    if (end > start && payload)
      cues.push({ startSeconds: start, endSeconds: end, settings: (m[9] ?? "").trim(), text: payload });
  }
  return cues.sort((a, b) => a.startSeconds - b.startSeconds);
}

export const vttTimestamp = (value: number) => {
  const ms = Math.max(0, Math.round(value * 1000));
  const pad = (n: number, w = 2) => String(n).padStart(w, "0");
  return `${pad(Math.floor(ms / 3_600_000))}:${pad(Math.floor((ms % 3_600_000) / 60_000))}:${pad(Math.floor((ms % 60_000) / 1000))}.${pad(ms % 1000, 3)}`;
};

const cueText = (c: Cue) =>
  `${vttTimestamp(c.startSeconds)} --> ${vttTimestamp(c.endSeconds)}${c.settings ? ` ${c.settings}` : ""}\n${c.text}`;

/** A whole WebVTT document of the cues. */
export const writeVtt = (cues: readonly Cue[]) => `WEBVTT\n\n${cues.map(cueText).join("\n\n")}\n`;

// Segment cue times are media times; the video timeline starts at 0 (MPEG-TS clock 0).
const SEGMENT_HEADER = "WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:0,LOCAL:00:00:00.000\n";

/** One WebVTT segment per video segment, with the cues that overlap it, and the media playlist. */
export function segmentCues(
  cues: readonly Cue[],
  segmentDurations: readonly number[],
  segmentName: (index: number) => string,
): { segments: { uri: string; text: string }[]; playlist: string } {
  const segments: { uri: string; text: string }[] = [];
  let start = 0;
  segmentDurations.forEach((duration, i) => {
    const end = start + duration;
    const inside = cues.filter((c) => c.startSeconds < end && c.endSeconds > start);
    segments.push({
      uri: segmentName(i),
      text: `${SEGMENT_HEADER}\n${inside.map(cueText).join("\n\n")}${inside.length > 0 ? "\n" : ""}`,
    });
    start = end;
  });
  const target = Math.max(1, ...segmentDurations.map((d) => Math.ceil(d)));
  const playlist = [
    "#EXTM3U",
    "#EXT-X-VERSION:7",
    `#EXT-X-TARGETDURATION:${target}`,
    "#EXT-X-MEDIA-SEQUENCE:0",
    "#EXT-X-PLAYLIST-TYPE:VOD",
    ...segmentDurations.flatMap((d, i) => [`#EXTINF:${d.toFixed(6)},`, segmentName(i)]),
    "#EXT-X-ENDLIST",
  ];
  return { segments, playlist: `${playlist.join("\n")}\n` };
}
