/**
 * What a source needs before any rung is scaled from it, decided from the probe: interlaced video
 * is deinterlaced (one frame per frame, so the frame rate is the source's), HDR is tone-mapped for
 * SDR outputs, and SDR is brought to the BT.709 matrix whatever matrix it was coded with. Done once, before
 * the split, so every rung, the poster and the thumbnails see the same picture.
 */
import type { DynamicRange, ProbeSummary } from "@tcoder/worker/contract";
import type { PlannedRendition } from "./ladder.ts";

/** ffprobe's field orders of interlaced video: top or bottom field first (coded and displayed). */
const INTERLACED_FIELD_ORDERS = new Set(["tt", "bb", "tb", "bt"]);

export interface Conditioning {
  /** Interlaced source: bwdif before scaling; progressive (or unknown) sources are left alone. */
  deinterlace: boolean;
  /** The source's transfer: PQ or HLG are tone-mapped for SDR renditions. */
  dynamicRange: DynamicRange;
  /** The source's YCbCr matrix as the scale filter names it, so SDR output can be converted to BT.709. */
  matrix: "bt709" | "bt601" | "bt2020" | "smpte240m" | "fcc";
}

// ffprobe's color_space names → the scale filter's matrix names.
const MATRICES: Record<string, Conditioning["matrix"]> = {
  bt709: "bt709",
  smpte170m: "bt601",
  bt470bg: "bt601",
  bt2020nc: "bt2020",
  bt2020c: "bt2020",
  smpte240m: "smpte240m",
  fcc: "fcc",
};

export function planConditioning(video: NonNullable<ProbeSummary["video"]>): Conditioning {
  return {
    deinterlace: video.fieldOrder !== undefined && INTERLACED_FIELD_ORDERS.has(video.fieldOrder),
    dynamicRange: video.dynamicRange ?? "sdr",
    // Untagged video follows the convention players use: HD and up is BT.709, SD is BT.601.
    matrix: (video.colorSpace && MATRICES[video.colorSpace]) || (video.height >= 720 ? "bt709" : "bt601"),
  };
}

/**
 * bwdif (yadif's successor) with one output frame per input frame; `deint=all` because the probe
 * already said the stream is interlaced, and the field order comes from each frame.
 */
export const DEINTERLACE = "bwdif=mode=send_frame:parity=auto:deint=all";

/**
 * SDR coded with another matrix (BT.601 SD, …) is converted to BT.709 once, at source size and
 * before deinterlacing: on interlaced 4:2:0 the chroma lines belong to alternate fields, and only a
 * field-aware (`interl=1`) conversion keeps chroma combing out of the converted luma.
 */
const toBt709 = (c: Conditioning) =>
  `scale=in_color_matrix=${c.matrix}:out_color_matrix=bt709:out_range=tv${c.deinterlace ? ":interl=1" : ""}`;

/** Filters at the head of the graph, before the frame-rate cap. */
export const headFilters = (c: Conditioning): string[] => [
  ...(c.dynamicRange === "sdr" && c.matrix !== "bt709" ? [toBt709(c)] : []),
  ...(c.deinterlace ? [DEINTERLACE] : []),
];

/**
 * HDR (PQ or HLG, BT.2020) to SDR BT.709: linear light at a 100 nit reference white, BT.709
 * primaries, highlights compressed with mobius (in-range tones stay as graded, where hable darkens
 * them), then BT.709 transfer and matrix in limited range. Without it an HDR source looks grey and
 * washed out on every SDR screen.
 */
export const TONE_MAP_TO_SDR = [
  "zscale=t=linear:npl=100",
  "format=gbrpf32le",
  "zscale=p=bt709",
  "tonemap=tonemap=mobius:desat=0",
  "zscale=t=bt709:m=bt709:r=tv",
  "format=yuv420p",
].join(",");

/** The branch every SDR rendition, the poster and the thumbnails are scaled from. */
export const sdrBranchFilters = (c: Conditioning | null) =>
  c && c.dynamicRange !== "sdr" ? TONE_MAP_TO_SDR : "format=yuv420p";

/** The branch HEVC renditions that keep an HDR source's range are scaled from (10-bit, source colours). */
export const HDR_BRANCH_FILTERS = "format=yuv420p10le";

/** Whether the rendition is scaled from the HDR branch (kept HDR) rather than the SDR one. */
export const fromHdrBranch = (r: PlannedRendition) => r.dynamicRange !== "sdr";

/** The scale of one rung: square pixels; SDR HEVC rungs are 10-bit (Main10) like the HDR ones. */
export function rungScale(r: PlannedRendition): string {
  const depth = r.codec === "hevc" && !fromHdrBranch(r) ? ",format=yuv420p10le" : "";
  return `scale=${r.width}:${r.height}:flags=bicubic,setsar=1${depth}`;
}

const TRANSFERS: Record<DynamicRange, string> = { sdr: "bt709", pq: "smpte2084", hlg: "arib-std-b67" };

/** Colour tags the encoder writes into the stream (VUI), so players know what they decode. */
export const colorTagArgs = (range: DynamicRange): string[] =>
  range === "sdr"
    ? ["-color_primaries", "bt709", "-color_trc", "bt709", "-colorspace", "bt709", "-color_range", "tv"]
    : ["-color_primaries", "bt2020", "-color_trc", TRANSFERS[range], "-colorspace", "bt2020nc", "-color_range", "tv"];
