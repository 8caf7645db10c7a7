/**
 * Loudness normalization (EBU R128): the job setting a client chooses and what the machine measured.
 * A job with `loudness` gets every audio rendition normalized with a two-pass `loudnorm` (measure
 * the source, then normalize with the measured values) to `targetLufs` integrated loudness.
 */
import { z } from "zod";

/** EBU R128 broadcast (−23 LUFS) and the level streaming services play at (−16 LUFS). */
export const loudnessTargetsLufs = { broadcast: -23, streaming: -16 } as const;

/** The true-peak ceiling after normalization: EBU R128's −1 dBTP, with headroom for AAC's overshoot. */
export const LOUDNESS_TRUE_PEAK_DBTP = -1.5;

/**
 * The loudness range `loudnorm` may keep before it compresses. Wide, so programme dynamics are kept
 * (a plain gain, `loudnorm`'s linear mode) unless the true-peak ceiling leaves no room for it.
 */
export const LOUDNESS_RANGE_LU = 20;

/** The quietest and loudest integrated loudness a job may ask for, in LUFS. */
export const LOUDNESS_TARGET_RANGE_LUFS = { min: -31, max: -10 } as const;

export const LoudnessSetting = z.object({
  /** Integrated loudness to reach, in LUFS: −23 (EBU R128) or −16 (streaming), or any level between −31 and −10. */
  targetLufs: z.number().min(LOUDNESS_TARGET_RANGE_LUFS.min).max(LOUDNESS_TARGET_RANGE_LUFS.max),
});
export type LoudnessSetting = z.infer<typeof LoudnessSetting>;

/** One EBU R128 measurement of a programme. */
export const LoudnessMeasurement = z.object({
  integratedLufs: z.number(),
  truePeakDbtp: z.number(),
  rangeLu: z.number(),
});
export type LoudnessMeasurement = z.infer<typeof LoudnessMeasurement>;

/** What normalization did, per audio rendition: the source (down-mixed as the rendition is) and the encoded result. */
export const LoudnessReport = z.object({
  targetLufs: z.number(),
  renditions: z.array(
    z.object({
      name: z.string(),
      channels: z.number().int().positive(),
      input: LoudnessMeasurement,
      output: LoudnessMeasurement,
    }),
  ),
});
export type LoudnessReport = z.infer<typeof LoudnessReport>;
