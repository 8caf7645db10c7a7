/**
 * Sends each HLS media segment as soon as ffmpeg has finished it, while the encode goes on, so that
 * once ffmpeg exits only the last segments and the files made from the whole encode (init segments,
 * playlists, MP4, stills, manifest) are left to upload. ffmpeg writes a segment under a temporary
 * name and renames it when it is complete (`-hls_flags temp_file`), so a `seg_*.m4s` on disk is
 * whole. Nothing here publishes: the segments sit under the attempt's own prefix, unreferenced,
 * until the manifest that lists them goes out after the lease fence.
 *
 * An early upload that fails is only logged: the package's upload sends every file this did not.
 */
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import type { UploadItem } from "../storage/s3.ts";

/** A directory ffmpeg writes one rendition's segments into, and the package path of a segment in it. */
export interface SegmentSource {
  dir: string;
  packagePath(segment: string): string;
}

export interface EarlyUploadOptions {
  sources: readonly SegmentSource[];
  /** The upload item of a file at a package path (its key, type and caching). */
  itemFor(path: string, packagePath: string): UploadItem;
  send(item: UploadItem): Promise<void>;
  concurrency: number;
  /** How often the directories are looked at while ffmpeg runs. */
  scanIntervalMs?: number;
  signal?: AbortSignal;
  log?: (message: string, fields?: Record<string, unknown>) => void;
}

export interface EarlyUploads {
  /**
   * Looks once more (ffmpeg has exited: every segment is there) and waits for every segment seen
   * to be sent or to fail. Returns the keys that were uploaded.
   */
  drain(): Promise<ReadonlySet<string>>;
  /** Stops looking and waits for the uploads in flight; what was not sent is the package's to send. */
  stop(): Promise<ReadonlySet<string>>;
}

const SEGMENT = /^seg_\d+\.m4s$/;

export function uploadSegmentsEarly(opts: EarlyUploadOptions): EarlyUploads {
  const seen = new Set<string>();
  const queue: UploadItem[] = [];
  const uploaded = new Set<string>();
  let scanning = true;
  const sleepers = new Set<() => void>();
  const wakeAll = () => {
    for (const wake of sleepers) wake();
  };
  const nap = (ms: number) =>
    new Promise<void>((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        sleepers.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      sleepers.add(wake);
    });
  const interval = opts.scanIntervalMs ?? 500;

  const scan = async () => {
    for (const source of opts.sources) {
      const names = await readdir(source.dir).catch(() => [] as string[]);
      for (const name of names.filter((n) => SEGMENT.test(n)).sort()) {
        const path = join(source.dir, name);
        if (seen.has(path)) continue;
        seen.add(path);
        queue.push(opts.itemFor(path, source.packagePath(name)));
      }
    }
  };

  const worker = async () => {
    for (;;) {
      const item = queue.shift();
      if (!item) {
        if (!scanning || opts.signal?.aborted) return;
        await nap(interval);
        continue;
      }
      try {
        await opts.send(item);
        uploaded.add(item.key);
      } catch (error) {
        if (!opts.signal?.aborted)
          opts.log?.("early segment upload failed; the package upload sends it", {
            key: item.key,
            error: (error as Error).message,
          });
      }
    }
  };

  // One loop looks for new segments; the workers send them.
  const scanner = (async () => {
    while (scanning && !opts.signal?.aborted) {
      await scan();
      if (queue.length > 0) wakeAll();
      await nap(interval);
    }
  })();
  const workers = Promise.all(Array.from({ length: Math.max(1, opts.concurrency) }, worker));

  const finish = async (): Promise<ReadonlySet<string>> => {
    scanning = false;
    wakeAll();
    await Promise.all([scanner, workers]);
    return uploaded;
  };

  return {
    async drain() {
      await scan();
      return finish();
    },
    stop() {
      queue.length = 0;
      return finish();
    },
  };
}
