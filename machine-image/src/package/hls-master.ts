/**
 * HLS master playlist from what was actually encoded: bandwidths measured from the segments on
 * disk, codecs from the encoded stream, so players pick renditions on real numbers. The playlist
 * shapes and the writer are the contract's (`contract/hls.ts`), shared with the API.
 */
import type { MediaPlaylist } from "@tcoder/worker/contract";

export {
  type MediaPlaylist,
  type MediaRendition,
  parseMediaPlaylist,
  type VariantStream,
  writeMasterPlaylist,
} from "@tcoder/worker/contract";

/** Peak (largest segment's rate, with the init segment for the first) and average bits per second. */
export function measureBandwidth(
  playlist: MediaPlaylist,
  sizeOf: (uri: string) => number,
): { bandwidth: number; averageBandwidth: number; sizeBytes: number } {
  const initBytes = playlist.initSegment ? sizeOf(playlist.initSegment) : 0;
  let peak = 0;
  let total = initBytes;
  playlist.segments.forEach((segment, i) => {
    const bytes = sizeOf(segment.uri);
    total += bytes;
    // A tiny last segment would report a misleading peak; rate it over at least one second.
    const seconds = Math.max(segment.durationSeconds, 1);
    peak = Math.max(peak, ((bytes + (i === 0 ? initBytes : 0)) * 8) / seconds);
  });
  const duration = Math.max(playlist.durationSeconds, 0.001);
  const average = Math.ceil((total * 8) / duration);
  return { bandwidth: Math.max(Math.ceil(peak), average, 1), averageBandwidth: Math.max(average, 1), sizeBytes: total };
}

const hex2 = (n: number) => n.toString(16).toUpperCase().padStart(2, "0");

/**
 * RFC 6381 codec string of an H.264 stream, read from its `avcC` box (in an init segment or MP4):
 * `avc1.` + profile, constraint flags and level bytes exactly as the encoder wrote them.
 */
export function avcCodecFromInit(bytes: Uint8Array): string | null {
  const at = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).indexOf("avcC");
  if (at < 0 || at + 8 > bytes.length) return null;
  // avcC: configurationVersion, AVCProfileIndication, profile_compatibility, AVCLevelIndication.
  const [version, profile, compatibility, level] = bytes.subarray(at + 4, at + 8);
  if (version !== 1 || profile === undefined || compatibility === undefined || level === undefined) return null;
  return `avc1.${hex2(profile)}${hex2(compatibility)}${hex2(level)}`;
}

const PROFILE_SPACES = ["", "A", "B", "C"];

/**
 * RFC 6381 codec string of an HEVC stream from its `hvcC` box (ISO/IEC 14496-15 §E.3):
 * `hvc1.<space><profile>.<compatibility, bit-reversed hex>.<tier><level>.<constraint bytes>`,
 * e.g. `hvc1.2.4.L120.B0` for Main10 at level 4.
 */
export function hevcCodecFromInit(bytes: Uint8Array): string | null {
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const at = buffer.indexOf("hvcC");
  if (at < 0 || at + 4 + 13 > bytes.length) return null;
  const box = buffer.subarray(at + 4, at + 4 + 13);
  if (box[0] !== 1) return null;
  const first = box[1] as number;
  const space = PROFILE_SPACES[first >> 6] ?? "";
  const tier = first & 0x20 ? "H" : "L";
  const profile = first & 0x1f;
  let compatibility = box.readUInt32BE(2);
  let reversed = 0;
  for (let bit = 0; bit < 32; bit++) {
    reversed = (reversed << 1) | (compatibility & 1);
    compatibility >>>= 1;
  }
  const constraints = [...box.subarray(6, 12)];
  while (constraints.length > 0 && constraints.at(-1) === 0) constraints.pop();
  const level = box[12] as number;
  return [
    `hvc1.${space}${profile}`,
    (reversed >>> 0).toString(16).toUpperCase(),
    `${tier}${level}`,
    ...constraints.map((b) => b.toString(16).toUpperCase()),
  ].join(".");
}

/** The codec string of whichever video configuration (H.264 or HEVC) an init segment holds. */
export const videoCodecFromInit = (bytes: Uint8Array): string | null =>
  avcCodecFromInit(bytes) ?? hevcCodecFromInit(bytes);

export const AAC_LC_CODEC = "mp4a.40.2";

/** HLS `VIDEO-RANGE` of a rendition's dynamic range. */
const VIDEO_RANGES = { sdr: "SDR", pq: "PQ", hlg: "HLG" } as const;
export const videoRangeOf = (range: keyof typeof VIDEO_RANGES) => VIDEO_RANGES[range];
