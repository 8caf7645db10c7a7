/**
 * AWS Signature Version 4 verification for S3 requests, in both forms clients use: the
 * `Authorization` header (AWS SDK) and the presigned query (`X-Amz-Signature`, what the worker's
 * aws4fetch hands to browsers). The canonical request is rebuilt from what actually arrived, so a
 * presigned URL only works with the very headers (content-type, content-length, …) it signed.
 * https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-authenticating-requests.html
 */
import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import type { IncomingMessage } from "node:http";
import { accessDenied, S3Error } from "./errors.ts";

export interface Credentials {
  accessKeyId: string;
  secretAccessKey: string;
}

export interface VerifiedRequest {
  accessKeyId: string;
  /** The `x-amz-content-sha256` the signature covers: a hex digest, `UNSIGNED-PAYLOAD` or `STREAMING-…`. */
  payloadHash: string;
  /** The request's signature: the seed of the aws-chunked chunk-signature chain. */
  signature: string;
  /** For `STREAMING-AWS4-HMAC-SHA256-PAYLOAD`: signs each chunk, chained from the request's signature. */
  chunkSigner: ChunkSigner;
}

export type ChunkSigner = (previousSignature: string, chunkSha256Hex: string) => string;

export interface CredentialScope {
  date: string;
  region: string;
  service: string;
  terminal: string;
}

interface SignatureParts {
  accessKeyId: string;
  scope: CredentialScope;
  signedHeaders: string[];
  signature: string;
  amzDate: string;
  payloadHash: string;
  presigned: boolean;
}

const algorithm = "AWS4-HMAC-SHA256";
const maxPresignSeconds = 7 * 24 * 3600;
const allowedSkewMs = 15 * 60 * 1000;
export const emptySha256 = createHash("sha256").update("").digest("hex");

export const signatureDoesNotMatch = () =>
  new S3Error(
    403,
    "SignatureDoesNotMatch",
    "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
  );

/** True when a request carries any SigV4 credentials (header or query); otherwise it is anonymous. */
export function isSigned(req: IncomingMessage, url: URL): boolean {
  return req.headers.authorization !== undefined || url.searchParams.has("X-Amz-Signature");
}

export function verifySigV4(
  req: IncomingMessage,
  url: URL,
  credentials: readonly Credentials[],
  nowMs = Date.now(),
): VerifiedRequest {
  const parts = url.searchParams.has("X-Amz-Signature") ? fromQuery(url) : fromHeader(req);
  const secret = credentials.find((c) => c.accessKeyId === parts.accessKeyId)?.secretAccessKey;
  if (secret === undefined) {
    throw new S3Error(403, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.");
  }
  checkTime(parts, url, nowMs);

  const signingKey = deriveSigningKey(secret, parts.scope);
  const scope = [parts.scope.date, parts.scope.region, parts.scope.service, parts.scope.terminal].join("/");
  const headerBlock = canonicalHeaders(req, parts.signedHeaders);
  const query = canonicalQuery(url);
  const matches = canonicalPaths(url).some((path) => {
    const canonicalRequest = [
      req.method ?? "GET",
      path,
      query,
      headerBlock,
      parts.signedHeaders.join(";"),
      parts.payloadHash,
    ].join("\n");
    const stringToSign = [algorithm, parts.amzDate, scope, sha256Hex(canonicalRequest)].join("\n");
    return sameHex(hmac(signingKey, stringToSign).toString("hex"), parts.signature);
  });
  if (!matches) throw signatureDoesNotMatch();

  return {
    accessKeyId: parts.accessKeyId,
    payloadHash: parts.payloadHash,
    signature: parts.signature.toLowerCase(),
    chunkSigner: chunkSigner(secret, parts.scope, parts.amzDate),
  };
}

/** Signs aws-chunked chunks, each signature chained to the previous one (the first to the request's). */
export function chunkSigner(secret: string, scope: CredentialScope, amzDate: string): ChunkSigner {
  const signingKey = deriveSigningKey(secret, scope);
  const scopeText = [scope.date, scope.region, scope.service, scope.terminal].join("/");
  return (previousSignature, chunkSha256Hex) =>
    hmac(
      signingKey,
      [`${algorithm}-PAYLOAD`, amzDate, scopeText, previousSignature, emptySha256, chunkSha256Hex].join("\n"),
    ).toString("hex");
}

function fromHeader(req: IncomingMessage): SignatureParts {
  const header = req.headers.authorization ?? "";
  const malformed = () => new S3Error(400, "AuthorizationHeaderMalformed", "The authorization header is malformed.");
  // R2 answers any other scheme (SigV2's `AWS id:signature`, a bearer token) 401 Unauthorized,
  // where AWS says 400: R2's error-codes page (10002) and its own message, quoted in
  // https://github.com/vastsa/FileCodeBox/issues/148.
  if (header.startsWith("AWS ")) {
    throw new S3Error(401, "Unauthorized", "SigV2 authorization is not supported. Please use SigV4 instead.");
  }
  if (!header.startsWith(`${algorithm} `)) throw new S3Error(401, "Unauthorized", "Unauthorized");
  const fields = new Map(
    header
      .slice(algorithm.length + 1)
      .split(",")
      .map((field) => field.trim().split("=", 2) as [string, string | undefined]),
  );
  const credential = fields.get("Credential");
  const signedHeaders = fields.get("SignedHeaders");
  const signature = fields.get("Signature");
  const amzDate = header1(req, "x-amz-date");
  if (!credential || !signedHeaders || !signature || !amzDate) throw malformed();
  const payloadHash = header1(req, "x-amz-content-sha256");
  if (!payloadHash)
    throw new S3Error(400, "InvalidRequest", "Missing required header for this request: x-amz-content-sha256");
  return {
    ...parseCredential(credential),
    signedHeaders: signedHeaders.split(";"),
    signature,
    amzDate,
    payloadHash,
    presigned: false,
  };
}

function fromQuery(url: URL): SignatureParts {
  const q = url.searchParams;
  const get = (name: string) => {
    const value = q.get(name);
    if (!value)
      throw new S3Error(400, "AuthorizationQueryParametersError", `Query-string authentication requires ${name}.`);
    return value;
  };
  if (get("X-Amz-Algorithm") !== algorithm) {
    throw new S3Error(400, "AuthorizationQueryParametersError", 'X-Amz-Algorithm only supports "AWS4-HMAC-SHA256"');
  }
  return {
    ...parseCredential(get("X-Amz-Credential")),
    signedHeaders: get("X-Amz-SignedHeaders").split(";"),
    signature: get("X-Amz-Signature"),
    amzDate: get("X-Amz-Date"),
    payloadHash: q.get("X-Amz-Content-Sha256") ?? "UNSIGNED-PAYLOAD",
    presigned: true,
  };
}

function parseCredential(credential: string): Pick<SignatureParts, "accessKeyId" | "scope"> {
  const [accessKeyId, date, region, service, terminal] = credential.split("/");
  if (!accessKeyId || !date || region === undefined || service !== "s3" || terminal !== "aws4_request") {
    throw new S3Error(400, "AuthorizationHeaderMalformed", `Invalid credential scope: ${credential}`);
  }
  return { accessKeyId, scope: { date, region, service, terminal } };
}

function checkTime(parts: SignatureParts, url: URL, nowMs: number) {
  const signedAt = parseAmzDate(parts.amzDate);
  if (signedAt === null || parts.amzDate.slice(0, 8) !== parts.scope.date) {
    throw new S3Error(400, "AuthorizationHeaderMalformed", "X-Amz-Date does not match the credential scope date.");
  }
  if (parts.presigned) {
    // Where R2 and AWS differ, R2's answer: a week or more of X-Amz-Expires is 400 InvalidArgument
    // with this message (R2's words, quoted in https://github.com/cloudreve/cloudreve/issues/2176;
    // AWS: 403 AuthorizationQueryParametersError), and an expired URL is 403 ExpiredRequest (R2's
    // error-codes page, code 10018, status as corrected in cloudflare/cloudflare-docs#32436; AWS:
    // 403 AccessDenied "Request has expired").
    const expires = Number(url.searchParams.get("X-Amz-Expires"));
    if (!Number.isInteger(expires) || expires < 1 || expires > maxPresignSeconds) {
      throw new S3Error(
        400,
        "InvalidArgument",
        `X-Amz-Expires must be less than a week (in seconds); that is, the given X-Amz-Expires must be less than ${maxPresignSeconds} seconds`,
      );
    }
    if (nowMs > signedAt + expires * 1000) throw new S3Error(403, "ExpiredRequest", "Request has expired");
    if (signedAt - nowMs > allowedSkewMs) throw accessDenied("Request is not valid yet");
  } else if (Math.abs(nowMs - signedAt) > allowedSkewMs) {
    throw new S3Error(
      403,
      "RequestTimeTooSkewed",
      "The difference between the request time and the current time is too large.",
    );
  }
}

function parseAmzDate(value: string): number | null {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(value);
  if (!m) return null;
  const [, y, mo, d, h, mi, s] = m.map(Number) as [number, number, number, number, number, number, number];
  return Date.UTC(y, mo - 1, d, h, mi, s);
}

function canonicalHeaders(req: IncomingMessage, signedHeaders: string[]): string {
  return `${signedHeaders
    .map((name) => `${name}:${(header1(req, name) ?? "").trim().replace(/\s+/g, " ")}`)
    .join("\n")}\n`;
}

function header1(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value.join(",") : value;
}

/** RFC 3986 encoding as SigV4 wants it: everything but unreserved characters percent-encoded. */
export function uriEncode(value: string): string {
  return encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

function canonicalQuery(url: URL): string {
  return [...url.searchParams]
    .filter(([key]) => key !== "X-Amz-Signature")
    .map(([key, value]) => [uriEncode(key), uriEncode(value)] as const)
    .sort(([k1, v1], [k2, v2]) => (k1 < k2 ? -1 : k1 > k2 ? 1 : v1 < v2 ? -1 : v1 > v2 ? 1 : 0))
    .map(([key, value]) => `${key}=${value}`)
    .join("&");
}

/**
 * S3 signs the path encoded once. Clients differ on what they put on the wire (the SDK sends it
 * encoded, aws4fetch re-derives it from the decoded path with `+` read as a space), so any of
 * these readings of the same path may be the one that was signed.
 */
function canonicalPaths(url: URL): string[] {
  const raw = url.pathname;
  const encodeDecoded = (decoded: string) => decoded.split("/").map(uriEncode).join("/");
  const candidates = new Set([raw]);
  try {
    candidates.add(encodeDecoded(decodeURIComponent(raw)));
    candidates.add(encodeDecoded(decodeURIComponent(raw.replace(/\+/g, " "))));
  } catch {
    // A malformed escape: only the raw path can have been signed.
  }
  return [...candidates];
}

function deriveSigningKey(secret: string, scope: CredentialScope): Buffer {
  const kDate = hmac(`AWS4${secret}`, scope.date);
  const kRegion = hmac(kDate, scope.region);
  const kService = hmac(kRegion, scope.service);
  return hmac(kService, scope.terminal);
}

const hmac = (key: string | Buffer, data: string) => createHmac("sha256", key).update(data, "utf8").digest();
const sha256Hex = (data: string) => createHash("sha256").update(data, "utf8").digest("hex");

function sameHex(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b.toLowerCase());
  return x.length === y.length && timingSafeEqual(x, y);
}
