/**
 * Downloading a job's source from the URL a client gave, so that the URL can never be used to
 * reach this machine's network: every hop (the URL and each redirect, at most 5) is checked as a
 * URL (contract `checkSourceUrl`), its host is resolved once and every address it resolves to must
 * be public (loopback only where the stack allows it), and the connection goes to exactly that
 * checked address (no second lookup a DNS rebinding could answer differently). The body streams to
 * disk and stops the moment it passes `maxBytes`; `checkPartial` may stop it earlier (the
 * container's declared duration). Outcomes are errors with the job's failure code.
 */
import { lookup } from "node:dns/promises";
import { createWriteStream } from "node:fs";
import { rm } from "node:fs/promises";
import { request as httpRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";
import type { LookupFunction } from "node:net";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { addressKind, checkSourceUrl, type SourceFetchPolicy } from "@tcoder/worker/contract";

export const MAX_REDIRECTS = 5;

/** Why a source could not be fetched, with the job failure code it becomes. */
export class SourceFetchError extends Error {
  constructor(
    readonly code: "source_unreachable" | "source_too_large",
    message: string,
    /** Worth another attempt (network trouble, a 5xx), unlike a refusal or an over-limit source. */
    readonly retryable: boolean,
  ) {
    super(message);
    this.name = "SourceFetchError";
  }
}

export interface SourceDownloadOptions {
  signal?: AbortSignal;
  /** No byte for this long (connect, headers or body): the server is given up on. */
  idleTimeoutMs?: number;
  onBytes?: (received: number, total: number | undefined) => void;
  /**
   * Called once when `partialCheckBytes` have been written: a reason to stop (the source is over a
   * limit its first bytes already show), or null to go on.
   */
  checkPartial?: (path: string) => Promise<string | null>;
  partialCheckBytes?: number;
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
const unreachable = (message: string, retryable = false) =>
  new SourceFetchError("source_unreachable", message, retryable);

/** The addresses a hop may connect to, or a refusal naming the first one that is not allowed. */
async function checkedAddresses(url: URL, allowLoopback: boolean): Promise<{ address: string; family: number }[]> {
  const host = url.hostname.replace(/^\[|\]$/g, "");
  let resolved: { address: string; family: number }[];
  if (addressKind(host) !== null) resolved = [{ address: host, family: host.includes(":") ? 6 : 4 }];
  else {
    try {
      resolved = await lookup(host, { all: true, verbatim: true });
    } catch (error) {
      throw unreachable(`${url.hostname} does not resolve: ${(error as NodeJS.ErrnoException).code ?? error}`, true);
    }
  }
  for (const { address } of resolved) {
    const kind = addressKind(address);
    if (kind === "internal" || (kind === "loopback" && !allowLoopback))
      throw unreachable(`${url.hostname} resolves to ${address}, a private, loopback or link-local address`);
  }
  if (resolved.length === 0) throw unreachable(`${url.hostname} resolves to no address`, true);
  return resolved;
}

/** Sends one GET to `url`, connecting only to `addresses`; resolves with the response head. */
function get(url: URL, addresses: { address: string; family: number }[], opts: SourceDownloadOptions) {
  // net.connect asks for every address when it may try several families, else for one.
  const pinned: LookupFunction = (_hostname, options, callback) => {
    if ((options as { all?: boolean }).all) callback(null, addresses);
    else callback(null, addresses[0]?.address ?? "", addresses[0]?.family ?? 4);
  };
  const send = url.protocol === "https:" ? httpsRequest : httpRequest;
  return new Promise<IncomingMessage>((resolve, reject) => {
    const req = send(
      url,
      {
        method: "GET",
        lookup: pinned,
        headers: { "user-agent": "tcoder-ingest/1", accept: "*/*" },
        ...(opts.signal ? { signal: opts.signal } : {}),
      },
      resolve,
    );
    req.setTimeout(opts.idleTimeoutMs ?? 30_000, () => req.destroy(unreachable(`${url.host} stopped answering`, true)));
    req.once("error", reject);
    req.end();
  });
}

/**
 * Streams the source at `policy.url` to `path`; returns its size and the content type the server
 * declared. Throws SourceFetchError (and removes the partial file) when it cannot or must not.
 */
export async function downloadSourceUrl(
  policy: SourceFetchPolicy,
  path: string,
  opts: SourceDownloadOptions = {},
): Promise<{ sizeBytes: number; contentType: string | undefined }> {
  try {
    return await fetchFollowingRedirects(policy, path, opts);
  } catch (error) {
    await rm(path, { force: true });
    if (error instanceof SourceFetchError || opts.signal?.aborted) throw error;
    throw unreachable(`fetching the source failed: ${(error as Error).message}`, true);
  }
}

async function fetchFollowingRedirects(policy: SourceFetchPolicy, path: string, opts: SourceDownloadOptions) {
  let current = policy.url;
  for (let redirects = 0; ; redirects++) {
    const check = checkSourceUrl(current, { allowLoopback: policy.allowLoopback });
    if (!check.ok) throw unreachable(redirects === 0 ? check.reason : `redirected to a refused URL: ${check.reason}`);
    const url = check.url;
    const response = await get(url, await checkedAddresses(url, policy.allowLoopback), opts);
    const status = response.statusCode ?? 0;
    if (REDIRECTS.has(status)) {
      response.resume();
      const location = response.headers.location;
      if (!location) throw unreachable(`${url.host} answered ${status} without a Location`);
      if (redirects >= MAX_REDIRECTS) throw unreachable(`more than ${MAX_REDIRECTS} redirects`);
      current = new URL(location, url).toString();
      continue;
    }
    if (status < 200 || status > 299) {
      response.resume();
      throw unreachable(`${url.host} answered ${status}`, status >= 500 || status === 408 || status === 429);
    }
    return saveBody(response, path, policy.maxBytes, opts);
  }
}

async function saveBody(response: IncomingMessage, path: string, maxBytes: number, opts: SourceDownloadOptions) {
  const declared = Number(response.headers["content-length"]);
  const total = Number.isFinite(declared) && response.headers["content-length"] !== undefined ? declared : undefined;
  const tooLarge = (what: string) =>
    new SourceFetchError("source_too_large", `the source ${what} the limit of ${maxBytes} bytes`, false);
  if (total !== undefined && total > maxBytes) {
    response.destroy();
    throw tooLarge(`declares ${total} bytes, over`);
  }
  let received = 0;
  let checked = false;
  const out = createWriteStream(path);
  const limit = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      received += chunk.length;
      if (received > maxBytes) return done(tooLarge("grew past"));
      opts.onBytes?.(received, total);
      done(null, chunk);
    },
  });
  const partialCheck = opts.checkPartial;
  // Once enough is on disk, ask (while the download goes on) whether the file already shows a limit passed.
  const timer = partialCheck
    ? setInterval(() => {
        if (checked || out.bytesWritten < (opts.partialCheckBytes ?? 1024 * 1024)) return;
        checked = true;
        void partialCheck(path).then(
          (reason) => reason && limit.destroy(new SourceFetchError("source_too_large", reason, false)),
          () => {}, // a partial file that cannot be read yet proves nothing; the probe decides later
        );
      }, 100)
    : undefined;
  try {
    await pipeline(response, limit, out, opts.signal ? { signal: opts.signal } : {});
  } finally {
    clearInterval(timer);
  }
  const contentType = response.headers["content-type"]?.split(";")[0]?.trim();
  return { sizeBytes: received, contentType: contentType || undefined };
}
