/** Facts about files this machine just encoded, via ffprobe. */
import { execFile } from "node:child_process";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

/** Container duration in seconds, or undefined when ffprobe reports none. */
export async function encodedDurationSeconds(path: string): Promise<number | undefined> {
  const { stdout } = await execFileAsync("ffprobe", [
    "-v",
    "error",
    "-show_entries",
    "format=duration",
    "-of",
    "json",
    path,
  ]);
  const duration = Number((JSON.parse(stdout) as { format?: { duration?: string } }).format?.duration);
  return Number.isFinite(duration) ? duration : undefined;
}
