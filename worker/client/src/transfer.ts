/**
 * One presigned PUT of a Blob to the object store. Browsers use XMLHttpRequest, the only API that
 * reports upload progress there; Node streams the Blob through fetch and counts the bytes; elsewhere
 * (workers) fetch sends the Blob and progress is reported when it is done. The store's ETag comes
 * back for multipart completion.
 */
import { abortableSleep } from "@tcoder/worker/contract/retry.ts";
import { abortedError, TcoderError } from "./errors.ts";

export interface PutResult {
  status: number;
  etag: string | null;
  body: string;
}

export interface PutOptions {
  headers: Record<string, string>;
  signal: AbortSignal;
  /** Bytes of this body sent so far. */
  onLoaded?: (loaded: number) => void;
  fetch: typeof fetch;
  /** Use XMLHttpRequest when the platform has it (browsers). */
  preferXhr: boolean;
  /**
   * Send the body through fetch as a stream whose bytes are counted as they go, so progress is
   * reported during the upload. Only where fetch streams a request body over HTTP/1.1 (Node);
   * browsers need XMLHttpRequest for that.
   */
  streamBody?: boolean;
}

/** Headers a browser computes itself and refuses to be told (content-length is still signed). */
const browserManaged = new Set(["content-length", "host"]);

export function putBlob(url: string, body: Blob, opts: PutOptions): Promise<PutResult> {
  if (opts.signal.aborted) return Promise.reject(abortedError(opts.signal));
  if (opts.preferXhr && typeof XMLHttpRequest !== "undefined") return putWithXhr(url, body, opts);
  return putWithFetch(url, body, opts);
}

async function putWithFetch(url: string, body: Blob, opts: PutOptions): Promise<PutResult> {
  let res: Response;
  try {
    res = await opts.fetch(url, {
      method: "PUT",
      signal: opts.signal,
      ...(opts.streamBody && opts.onLoaded
        ? {
            body: countedStream(body, opts.onLoaded),
            duplex: "half",
            // A stream has no length of its own; the store wants one (it is signed on most URLs anyway).
            headers: { "content-length": String(body.size), ...opts.headers },
          }
        : { body, headers: opts.headers }),
    } as RequestInit);
  } catch (err) {
    if (opts.signal.aborted) throw abortedError(opts.signal);
    throw new TcoderError("network", `upload request failed: ${err instanceof Error ? err.message : String(err)}`, {
      cause: err,
    });
  }
  const text = await res.text().catch(() => "");
  if (res.ok) opts.onLoaded?.(body.size);
  return { status: res.status, etag: res.headers.get("etag"), body: text };
}

/** The Blob's bytes as a stream that reports how many have been read so far. */
function countedStream(body: Blob, onLoaded: (loaded: number) => void): ReadableStream<Uint8Array> {
  let loaded = 0;
  return body.stream().pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        loaded += chunk.byteLength;
        onLoaded(loaded);
        controller.enqueue(chunk);
      },
    }),
  );
}

function putWithXhr(url: string, body: Blob, opts: PutOptions): Promise<PutResult> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("PUT", url);
    for (const [name, value] of Object.entries(opts.headers))
      if (!browserManaged.has(name.toLowerCase())) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (e) => opts.onLoaded?.(e.loaded);
    const onAbort = () => xhr.abort();
    opts.signal.addEventListener("abort", onAbort, { once: true });
    const done = () => opts.signal.removeEventListener("abort", onAbort);
    xhr.onload = () => {
      done();
      if (xhr.status >= 200 && xhr.status < 300) opts.onLoaded?.(body.size);
      resolve({ status: xhr.status, etag: xhr.getResponseHeader("etag"), body: xhr.responseText });
    };
    xhr.onerror = () => {
      done();
      reject(new TcoderError("network", "upload request failed (network error or CORS)"));
    };
    xhr.onabort = () => {
      done();
      reject(abortedError(opts.signal));
    };
    xhr.send(body);
  });
}

/** Waits `ms`, or rejects with the SDK's `aborted` error as soon as `signal` aborts. */
export const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  abortableSleep(ms, signal).catch(() => {
    throw abortedError(signal);
  });
