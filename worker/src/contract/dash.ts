/**
 * The parts of a DASH manifest (`manifest.mpd`) both sides write: its text adaptation sets. A
 * machine writes them with the rest of the MPD (machine-image package/dash.ts); the API rewrites
 * them when captions are added to or removed from a finished job, as it does the master playlist.
 */

/** A subtitle rendition described to DASH players: one whole WebVTT file. */
export interface DashText {
  name: string;
  language?: string;
  label: string;
  /** Path of the whole WebVTT file, relative to the manifest. */
  uri: string;
}

export const xmlEscape = (value: string) =>
  value.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

/** The lines of one text AdaptationSet, indented as inside a Period. */
export const dashTextAdaptationSet = (t: DashText, id: number): string[] => [
  `    <AdaptationSet id="${id}" contentType="text" mimeType="text/vtt"${t.language ? ` lang="${xmlEscape(t.language)}"` : ""}>`,
  `      <Label>${xmlEscape(t.label)}</Label>`,
  `      <Representation id="${xmlEscape(t.name)}" bandwidth="256">`,
  `        <BaseURL>${xmlEscape(t.uri)}</BaseURL>`,
  "      </Representation>",
  "    </AdaptationSet>",
];

/** Thrown when an MPD is not one a tcoder machine wrote (no single Period to put the text sets in). */
export class DashManifestError extends Error {
  override readonly name = "DashManifestError";
}

/**
 * A published MPD with its text adaptation sets replaced by `texts` (all of them, in order), after
 * the video and audio sets, numbered on from them. Everything else is kept as it was.
 */
export function withDashTextSets(mpd: string, texts: readonly DashText[]): string {
  const withoutText = mpd
    .replace(/\r\n?/g, "\n")
    .replace(/[ \t]*<AdaptationSet\b[^>]*contentType="text"[\s\S]*?<\/AdaptationSet>\n/g, "");
  const periodEnd = withoutText.lastIndexOf("  </Period>");
  if (periodEnd < 0 || withoutText.indexOf("</Period>") !== withoutText.lastIndexOf("</Period>"))
    throw new DashManifestError("the DASH manifest has no single Period");
  const ids = [...withoutText.matchAll(/<AdaptationSet id="(\d+)"/g)].map((m) => Number(m[1]));
  const next = ids.length === 0 ? 0 : Math.max(...ids) + 1;
  const sets = texts.flatMap((t, i) => dashTextAdaptationSet(t, next + i));
  return `${withoutText.slice(0, periodEnd)}${sets.map((line) => `${line}\n`).join("")}${withoutText.slice(periodEnd)}`;
}
