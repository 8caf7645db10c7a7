/**
 * Which subtitle streams become WebVTT renditions (`EXT-X-MEDIA TYPE=SUBTITLES`): every text
 * stream (SubRip, ASS/SSA, mov_text, WebVTT). Image subtitles (PGS, DVB, DVD) cannot become text
 * without OCR; they are reported on the job as skipped rather than dropped silently.
 */
import { languageName, type ProbeSummary, type SkippedSubtitle } from "@tcoder/worker/contract";

export interface PlannedSubtitle {
  /** Folder and rendition name: `subs-<stream>`. */
  name: string;
  /** Position among the source's subtitle streams (`0:s:<n>`). */
  sourceIndex: number;
  /** HLS NAME, unique: the stream's title, else its language's name, else "Subtitles n". */
  label: string;
  language?: string;
  default: boolean;
  forced: boolean;
}

export function planSubtitles(probe: ProbeSummary): { renditions: PlannedSubtitle[]; skipped: SkippedSubtitle[] } {
  const renditions: PlannedSubtitle[] = [];
  const skipped: SkippedSubtitle[] = [];
  const taken = new Set<string>();
  for (const stream of probe.subtitleStreams ?? []) {
    if (!stream.text) {
      skipped.push({
        index: stream.index,
        codec: stream.codec,
        ...(stream.language ? { language: stream.language } : {}),
        reason: `${stream.codec} subtitles are images; only text subtitles become WebVTT`,
      });
      continue;
    }
    const base = stream.title ?? languageName(stream.language) ?? `Subtitles ${stream.index + 1}`;
    let label = base;
    for (let n = 2; taken.has(label); n++) label = `${base} (${n})`;
    taken.add(label);
    renditions.push({
      name: `subs-${stream.index}`,
      sourceIndex: stream.index,
      label,
      ...(stream.language ? { language: stream.language } : {}),
      default: stream.default,
      forced: stream.forced,
    });
  }
  return { renditions, skipped };
}
