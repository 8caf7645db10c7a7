/**
 * HDR10 static metadata of a source (mastering display colour volume, content light level), read
 * from its first frame and handed to x265 so the HEVC renditions carry the source's signalling.
 * ffmpeg 5.1's libx265 wrapper does not pass frame side data through by itself.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { z } from "zod";

const execFileAsync = promisify(execFile);

export interface HdrMetadata {
  /** x265 `master-display`: G(x,y)B(x,y)R(x,y)WP(x,y)L(max,min) in 0.00002 and 0.0001 cd/m² units. */
  masterDisplay?: string;
  /** x265 `max-cll`: MaxCLL,MaxFALL in cd/m². */
  maxCll?: string;
}

const SideData = z.looseObject({
  side_data_type: z.string().optional(),
  red_x: z.string().optional(),
  red_y: z.string().optional(),
  green_x: z.string().optional(),
  green_y: z.string().optional(),
  blue_x: z.string().optional(),
  blue_y: z.string().optional(),
  white_point_x: z.string().optional(),
  white_point_y: z.string().optional(),
  min_luminance: z.string().optional(),
  max_luminance: z.string().optional(),
  max_content: z.number().optional(),
  max_average: z.number().optional(),
});
const FirstFrame = z.object({
  frames: z.array(z.looseObject({ side_data_list: z.array(SideData).optional() })).default([]),
});

/** A rational like `34000/50000` in the given unit (0.00002 for chromaticity, 0.0001 for luminance). */
const inUnits = (rational: string | undefined, unit: number): number | undefined => {
  const [num, den] = (rational ?? "").split("/").map(Number);
  if (num === undefined || !Number.isFinite(num) || !den) return undefined;
  return Math.round(num / den / unit);
};

export function hdrMetadataOf(sideData: z.infer<typeof SideData>[]): HdrMetadata {
  const metadata: HdrMetadata = {};
  const mastering = sideData.find((s) => s.side_data_type === "Mastering display metadata");
  if (mastering) {
    const xy = (x?: string, y?: string) => `(${inUnits(x, 0.00002)},${inUnits(y, 0.00002)})`;
    const values = [
      xy(mastering.green_x, mastering.green_y),
      xy(mastering.blue_x, mastering.blue_y),
      xy(mastering.red_x, mastering.red_y),
      xy(mastering.white_point_x, mastering.white_point_y),
      `(${inUnits(mastering.max_luminance, 0.0001)},${inUnits(mastering.min_luminance, 0.0001)})`,
    ];
    if (!values.some((v) => v.includes("undefined")))
      metadata.masterDisplay = `G${values[0]}B${values[1]}R${values[2]}WP${values[3]}L${values[4]}`;
  }
  const light = sideData.find((s) => s.side_data_type === "Content light level metadata");
  if (light?.max_content !== undefined && light.max_average !== undefined)
    metadata.maxCll = `${light.max_content},${light.max_average}`;
  return metadata;
}

/** Reads the first video frame's HDR side data; none (or an unreadable frame) is no metadata. */
export async function readHdrMetadata(path: string): Promise<HdrMetadata> {
  try {
    const { stdout } = await execFileAsync(
      "ffprobe",
      ["-v", "error", "-select_streams", "v:0", "-read_intervals", "%+#1", "-show_frames", "-of", "json", path],
      { maxBuffer: 4 * 1024 * 1024 },
    );
    const parsed = FirstFrame.safeParse(JSON.parse(stdout));
    return parsed.success ? hdrMetadataOf(parsed.data.frames[0]?.side_data_list ?? []) : {};
  } catch {
    return {};
  }
}
