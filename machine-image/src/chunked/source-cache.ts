/**
 * The source of the chunked job this machine last worked on, kept between its tasks: a machine
 * usually takes several tasks of one job in a row, and each would otherwise download the whole
 * source again. One source at a time, so the disk holds no more than an unchunked job would.
 */
import { mkdir, readdir, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";

const cacheDir = (workDir: string) => join(workDir, "sources");
const cachedPath = (workDir: string, jobId: string) => join(cacheDir(workDir), jobId);

/** Moves a downloaded source into the cache, dropping any other job's. */
export async function keepSource(workDir: string, jobId: string, path: string): Promise<string> {
  const dir = cacheDir(workDir);
  await mkdir(dir, { recursive: true });
  for (const other of await readdir(dir))
    if (other !== jobId) await rm(join(dir, other), { recursive: true, force: true });
  const kept = cachedPath(workDir, jobId);
  await rename(path, kept);
  return kept;
}

/** The cached source of `jobId`, if this machine has it. */
export async function cachedSource(
  workDir: string,
  jobId: string,
): Promise<{ path: string; sizeBytes: number } | null> {
  const path = cachedPath(workDir, jobId);
  try {
    return { path, sizeBytes: (await stat(path)).size };
  } catch {
    return null;
  }
}

/** Drops every cached source: a stopped Fly Machine keeps its disk until it runs again. */
export async function dropCachedSources(workDir: string): Promise<void> {
  await rm(cacheDir(workDir), { recursive: true, force: true });
}
