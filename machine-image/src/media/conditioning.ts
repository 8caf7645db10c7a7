/**
 * What a source needs before any rung is scaled from it, decided from the probe: interlaced video
 * is deinterlaced (one frame per frame, so the frame rate is the source's), HDR is tone-mapped for
 * SDR outputs, and SDR is brought to BT.709 whatever matrix it was coded with. Done once, before
 * the split, so every rung, the poster and the thumbnails see the same picture.
 */
import type { DynamicRange, ProbeSummary } from "@tcoder/worker/contract";

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

/** Filters at the head of the graph, before the frame-rate cap. */
export const headFilters = (c: Conditioning): string[] => (c.deinterlace ? [DEINTERLACE] : []);
