/**
 * The local cloud's object store: S3-compatible enough for the AWS SDK, aws4fetch and browsers
 * (path-style `http://127.0.0.1:<port>/<bucket>/<key>`), objects on disk, SigV4 verified on every
 * non-public request, and an R2-shaped event notification for every created object — delivered
 * after the response, as R2 does, so consumers see the same ordering they will in the cloud.
 */
import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { type R2EventNotification, retry } from "@tcoder/worker/contract";
import { MAX_SINGLE_UPLOAD_BYTES } from "@tcoder/worker/contract/object-store.ts";
import { serveLocal } from "./http-service.ts";
import { type CorsConfig, corsHeaders, preflight } from "./s3/cors.ts";
import { DiskStore } from "./s3/disk-store.ts";
import { accessDenied, noSuchBucket, S3Error } from "./s3/errors.ts";
import { checkKey } from "./s3/limits.ts";
import { type Created, dispatch, type Route } from "./s3/operations.ts";
import { type Credentials, isSigned, verifySigV4 } from "./s3/sigv4.ts";
import { renderXml, sendXml } from "./s3/xml.ts";

export interface S3Faults {
  /** Fraction (0..1) of matching requests answered 500 InternalError. */
  failRate?: number;
  /** Which requests may fail: object reads (GET/HEAD) and/or writes (PUT, parts, completes). Both if unset. */
  ops?: ("get" | "put")[];
}

export interface S3StoreOptions {
  /** Objects live here and survive restarts on the same dir. */
  dir: string;
  port?: number;
  credentials: Credentials;
  /** The region clients sign for; informational, any region in a valid signature is accepted. */
  region?: string;
  buckets: string[];
  /** Buckets anyone may GET/HEAD objects from without signing (like an R2 public bucket). */
  publicReadBuckets?: string[];
  onObjectCreated?: (bucket: string, event: R2EventNotification) => void | Promise<void>;
  faults?: S3Faults;
  /** Each bucket's CORS rules (`bucketCors` with the stack's origins); a bucket without any answers no browser. */
  cors?: CorsConfig;
  /** `account` in event notifications. */
  accountId?: string;
}

export interface S3Store {
  /** `http://127.0.0.1:<port>`: the S3 endpoint (path-style). */
  endpoint: string;
  /** Where anonymous readers fetch a public bucket's objects: `${endpoint}/${bucket}`. */
  publicBaseUrl(bucket: string): string;
  /** Replace the fault injection settings at runtime (undefined turns faults off). */
  setFaults(faults: S3Faults | undefined): void;
  stop(): Promise<void>;
}

const eventAttempts = 5;

export async function startS3Store(opts: S3StoreOptions): Promise<S3Store> {
  const store = await DiskStore.open(opts.dir, opts.buckets);
  const publicBuckets = new Set(opts.publicReadBuckets ?? []);
  let faults = opts.faults;
  const deliveries = new Set<Promise<void>>();

  const deliver = (bucket: string, created: Created) => {
    if (!opts.onObjectCreated) return;
    const event: R2EventNotification = {
      account: opts.accountId ?? "local",
      action: created.action,
      bucket,
      object: { key: created.object.key, size: created.object.size, eTag: created.object.etag },
      eventTime: new Date().toISOString(),
      ...(created.copySource ? { copySource: created.copySource } : {}),
    };
    const delivery = deliverWithRetries(() => opts.onObjectCreated?.(bucket, event), event).finally(() =>
      deliveries.delete(delivery),
    );
    deliveries.add(delivery);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? "/", "http://s3.local");
    const method = req.method ?? "GET";
    const [bucketSegment = "", ...keySegments] = url.pathname.slice(1).split("/");
    const bucket = decodePath(bucketSegment);
    // Set first so error responses carry them too: a page can read why the store refused it.
    for (const [name, value] of Object.entries(corsHeaders(opts.cors?.[bucket], req))) res.setHeader(name, value);
    if (method === "OPTIONS") return void res.writeHead(200, preflight(opts.cors?.[bucket], req)).end();

    const key = decodePath(keySegments.join("/"));
    const auth = isSigned(req, url) ? verifySigV4(req, url, [opts.credentials]) : null;
    if (auth === null && !(publicBuckets.has(bucket) && key !== "" && (method === "GET" || method === "HEAD"))) {
      throw accessDenied();
    }
    if (bucket !== "" && !store.hasBucket(bucket)) throw noSuchBucket(bucket);
    checkKey(key);
    injectFault(faults, method, key);

    const route: Route = { method, url, bucket, key, auth };
    const created = await dispatch(store, route, req, res);
    // "close", not "finish": the object exists even if the client hung up before reading the reply.
    if (created) res.once("close", () => deliver(bucket, created));
  };

  const service = await serveLocal((req, res) => {
    const requestId = randomUUID().replace(/-/g, "").slice(0, 16).toUpperCase();
    res.setHeader("x-amz-request-id", requestId);
    handle(req, res).catch((error: unknown) => sendError(req, res, error, requestId));
  }, opts.port);
  const endpoint = service.url;

  return {
    endpoint,
    publicBaseUrl: (bucket) => `${endpoint}/${bucket}`,
    setFaults(next) {
      faults = next;
    },
    async stop() {
      await service.stop();
      // A consumer that never settles must not keep the store from stopping.
      await Promise.race([Promise.allSettled([...deliveries]), new Promise((r) => setTimeout(r, 10_000).unref())]);
    },
  };
}

function injectFault(faults: S3Faults | undefined, method: string, key: string) {
  if (!faults?.failRate || key === "") return;
  const op = method === "GET" || method === "HEAD" ? "get" : method === "PUT" || method === "POST" ? "put" : null;
  if (op === null || (faults.ops && !faults.ops.includes(op))) return;
  if (Math.random() < faults.failRate) {
    throw new S3Error(500, "InternalError", "We encountered an internal error. Please try again. (injected fault)");
  }
}

function sendError(req: IncomingMessage, res: ServerResponse, error: unknown, requestId: string) {
  const s3Error =
    error instanceof S3Error
      ? error
      : new S3Error(500, "InternalError", `We encountered an internal error: ${(error as Error).message}`);
  if (!(error instanceof S3Error)) console.error("[s3-store]", error);
  if (res.headersSent) return void res.destroy();
  // Whatever the client is still sending is not wanted: read it so the response reaches it, unless
  // it is more than any upload may be (then the connection closes after the answer).
  if (Number(req.headers["content-length"] ?? 0) > MAX_SINGLE_UPLOAD_BYTES) res.setHeader("connection", "close");
  else req.resume();
  if (req.method === "HEAD") return void res.writeHead(s3Error.status).end();
  const resource = decodeURIComponentSafe((req.url ?? "/").split("?")[0] ?? "/");
  sendXml(
    res,
    s3Error.status,
    renderXml(
      "Error",
      { Code: s3Error.code, Message: s3Error.message, ...s3Error.extra, Resource: resource, RequestId: requestId },
      false,
    ),
  );
}

function decodePath(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new S3Error(400, "InvalidURI", "Couldn't parse the specified URI.");
  }
}

function decodeURIComponentSafe(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

/** A queue that does not take the event (workerd restarting) is tried again; after the last try the event is dropped, and said so. */
async function deliverWithRetries(send: () => void | Promise<void>, event: R2EventNotification): Promise<void> {
  await retry(async () => send(), { attempts: eventAttempts, baseDelayMs: 200, maxDelayMs: 2_000 }).catch(
    (error: unknown) =>
      console.error(`[s3-store] dropping ${event.action} event for ${event.bucket}/${event.object.key}`, error),
  );
}
