/**
 * Uploads a package's media as soon as each file is final, instead of all of it after the encode:
 * HLS segments while ffmpeg still encodes (ffmpeg writes a segment under a temporary name and
 * renames it when it is whole, `-hls_flags temp_file`, so a `seg_*.m4s` on disk is complete), and
 * the files packaging makes (the MP4, the sprite) the moment they are made. Nothing here publishes:
 * the files sit under the attempt's own prefix, unreferenced, until the playlists and the manifest
 * that list them go out after the lease fence.
 *
 * An upload that fails is only logged: the package's upload sends every file this did not.
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
  /** Uploads at once while ffmpeg runs (it has the cores), and once it is done. */
  concurrency: { encoding: number; packaging: number };
  /** How often the directories are looked at while ffmpeg runs. */
  scanIntervalMs?: number;
  signal?: AbortSignal;
  log?: (message: string, fields?: Record<string, unknown>) => void;
}

export interface EarlyUploads {
  /** ffmpeg has exited: one last look for segments, then uploads go on at packaging concurrency. */
  encoded(): Promise<void>;
  /** Queues a file that is final (packaging made it). */
  add(item: UploadItem): void;
  /** Waits for every queued upload to be sent or to fail. Returns the keys that were uploaded. */
  settle(): Promise<ReadonlySet<string>>;
  /** Drops what is queued and waits for the uploads in flight; the rest is the package's to send. */
  stop(): Promise<ReadonlySet<string>>;
}

const SEGMENT = /^seg_\d+\.m4s$/;

export function startEarlyUploads(opts: EarlyUploadOptions): EarlyUploads {
  const seen = new Set<string>();
  const queue: UploadItem[] = [];
  const uploaded = new Set<string>();
  let scanning = true;
  let accepting = true;
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

  const enqueue = (item: UploadItem) => {
    if (seen.has(item.key)) return;
    seen.add(item.key);
    queue.push(item);
    wakeAll();
  };

  const scan = async () => {
    for (const source of opts.sources) {
      const names = await readdir(source.dir).catch(() => [] as string[]);
      for (const name of names.filter((n) => SEGMENT.test(n)).sort())
        enqueue(opts.itemFor(join(source.dir, name), source.packagePath(name)));
    }
  };

  const worker = async () => {
    for (;;) {
      const item = queue.shift();
      if (!item) {
        if (!accepting || opts.signal?.aborted) return;
        await nap(interval);
        continue;
      }
      try {
        await opts.send(item);
        uploaded.add(item.key);
      } catch (error) {
        if (!opts.signal?.aborted)
          opts.log?.("early upload failed; the package upload sends it", {
            key: item.key,
            error: (error as Error).message,
          });
      }
    }
  };

  const scanner = (async () => {
    while (scanning && !opts.signal?.aborted) {
      await scan();
      await nap(interval);
    }
  })();
  const workers = [...Array.from({ length: Math.max(1, opts.concurrency.encoding) }, worker)];

  const finish = async (): Promise<ReadonlySet<string>> => {
    scanning = false;
    accepting = false;
    wakeAll();
    await scanner;
    await Promise.all(workers);
    return uploaded;
  };

  return {
    async encoded() {
      scanning = false;
      wakeAll();
      await scanner;
      await scan();
      const more = opts.concurrency.packaging - workers.length;
      for (let i = 0; i < more; i++) workers.push(worker());
    },
    add: (item) => {
      if (accepting) enqueue(item);
    },
    settle: finish,
    stop() {
      queue.length = 0;
      return finish();
    },
  };
}
