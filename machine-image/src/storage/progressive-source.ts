/**
 * A source ffmpeg starts on before it is downloaded. The object is fetched to a local file in
 * parallel ranged parts (`startDownload`), the last part right after the first, so an MP4 whose
 * index sits at its end can be probed from those two; a loopback HTTP server gives ffprobe and
 * ffmpeg any byte range of it once that range is on disk, and holds a read back until it is. Seeks
 * land on the local file, never on the network, so a badly interleaved source costs no more than
 * when the whole file came first; ffmpeg consumes a source far slower than it downloads, so it
 * rarely waits at all. Network trouble is the download's to retry; if it still fails, every
 * waiting read fails and `downloaded` says why.
 */
import { once } from "node:events";
import { type FileHandle, open } from "node:fs/promises";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { S3Client } from "@aws-sdk/client-s3";
import { type DownloadOptions, startDownload } from "./s3.ts";

export interface ProgressiveSource {
  /** What ffmpeg and ffprobe read: `http://127.0.0.1:<port>/source`. */
  url: string;
  /** The file the object is downloaded to; whole once `downloaded` resolves. */
  path: string;
  sizeBytes: number;
  /** Resolves once every byte is in `path`; rejects as the download failed. */
  downloaded: Promise<void>;
  /** The download's error, once it failed. */
  failure(): Error | undefined;
  /** Stops the download if it is still running and the server; waits for both. */
  close(): Promise<void>;
}

/** Reads are served in pieces of this size, so a slow reader holds little memory. */
const READ_BYTES = 1024 * 1024;

export async function openProgressiveSource(
  s3: S3Client,
  bucket: string,
  key: string,
  path: string,
  { signal, ...download }: Omit<DownloadOptions, "onWritten" | "tailEarly"> = {},
): Promise<ProgressiveSource> {
  const stop = new AbortController();
  const written = new WrittenRanges();
  const started = await startDownload(s3, bucket, key, path, {
    ...download,
    signal: signal ? AbortSignal.any([signal, stop.signal]) : stop.signal,
    tailEarly: true,
    onWritten: (start, length) => written.add(start, start + length),
  });
  const { sizeBytes } = started;
  let failed: Error | undefined;
  const downloaded = started.done.then(
    () => written.finish(),
    (error: Error) => {
      failed = error;
      written.fail(error);
      throw error;
    },
  );
  // Nobody may be waiting when it fails: its error is still read through `failure()`.
  downloaded.catch(() => {});

  let file: FileHandle | undefined;
  const server = createServer((req, res) => {
    if (file) serveRange(req, res, file, sizeBytes, written).catch(() => res.destroy());
  });
  try {
    file = await open(path, "r");
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
  } catch (error) {
    // Nobody will read or close it: the download stops here.
    stop.abort(error);
    await downloaded.catch(() => {});
    await file?.close();
    throw error;
  }
  const { port } = server.address() as AddressInfo;
  const reading = file;

  return {
    url: `http://127.0.0.1:${port}/source`,
    path,
    sizeBytes,
    downloaded,
    failure: () => failed,
    async close() {
      stop.abort(new Error("source closed"));
      await downloaded.catch(() => {});
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await reading.close();
    },
  };
}

async function serveRange(
  req: IncomingMessage,
  res: ServerResponse,
  file: FileHandle,
  sizeBytes: number,
  written: WrittenRanges,
): Promise<void> {
  if (req.method !== "GET" && req.method !== "HEAD") return void res.writeHead(405).end();
  const range = parseRange(req.headers.range, sizeBytes);
  if (range === "unsatisfiable") return void res.writeHead(416, { "Content-Range": `bytes */${sizeBytes}` }).end();
  const { start, end } = range ?? { start: 0, end: sizeBytes };
  res.writeHead(range ? 206 : 200, {
    "Accept-Ranges": "bytes",
    "Content-Type": "application/octet-stream",
    "Content-Length": String(end - start),
    ...(range ? { "Content-Range": `bytes ${start}-${end - 1}/${sizeBytes}` } : {}),
  });
  if (req.method === "HEAD") return void res.end();
  let closed = false;
  res.once("close", () => {
    closed = true;
  });
  for (let position = start; position < end && !closed; ) {
    const available = await written.availableFrom(position);
    if (closed) break;
    const length = Math.min(available, end, position + READ_BYTES) - position;
    const buffer = Buffer.allocUnsafe(length);
    const { bytesRead } = await file.read(buffer, 0, length, position);
    if (bytesRead === 0) throw new Error(`nothing read at byte ${position}`);
    position += bytesRead;
    if (!res.write(buffer.subarray(0, bytesRead))) await Promise.race([once(res, "drain"), once(res, "close")]);
  }
  res.end();
}

/** `bytes=a-b`, `bytes=a-`, `bytes=-n` as [start, end); null without a Range header. */
export function parseRange(
  header: string | undefined,
  sizeBytes: number,
): { start: number; end: number } | "unsatisfiable" | null {
  const match = /^bytes=(\d*)-(\d*)$/.exec(header?.trim() ?? "");
  if (!match) return null;
  const [, from = "", to = ""] = match;
  if (from === "" && to === "") return null;
  if (from === "") {
    const suffix = Math.min(Number(to), sizeBytes);
    return suffix === 0 ? "unsatisfiable" : { start: sizeBytes - suffix, end: sizeBytes };
  }
  const start = Number(from);
  if (start >= sizeBytes) return "unsatisfiable";
  const end = to === "" ? sizeBytes : Math.min(Number(to) + 1, sizeBytes);
  return end <= start ? "unsatisfiable" : { start, end };
}

/** Which byte ranges of the file are written, and a wait for more. */
export class WrittenRanges {
  /** Disjoint, sorted, merged [start, end) ranges. */
  private ranges: [number, number][] = [];
  private waiters = new Set<() => void>();
  private complete = false;
  private error: Error | undefined;

  add(start: number, end: number) {
    const merged: [number, number][] = [];
    let next: [number, number] = [start, end];
    for (const range of this.ranges) {
      if (range[1] < next[0] || range[0] > next[1]) merged.push(range);
      else next = [Math.min(range[0], next[0]), Math.max(range[1], next[1])];
    }
    merged.push(next);
    this.ranges = merged.sort((a, b) => a[0] - b[0]);
    this.wake();
  }

  finish() {
    this.complete = true;
    this.wake();
  }

  fail(error: Error) {
    this.error = error;
    this.wake();
  }

  /** The end of the written run that `position` is in, once there is one. */
  async availableFrom(position: number): Promise<number> {
    for (;;) {
      const run = this.ranges.find(([start, end]) => start <= position && position < end);
      if (run) return run[1];
      if (this.error) throw this.error;
      if (this.complete) throw new Error(`byte ${position} was never written`);
      await new Promise<void>((resolve) => this.waiters.add(resolve));
    }
  }

  private wake() {
    const waiting = [...this.waiters];
    this.waiters.clear();
    for (const resolve of waiting) resolve();
  }
}
