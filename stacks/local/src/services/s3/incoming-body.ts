/**
 * An upload's bytes as the client meant them: aws-chunked framing removed, and every integrity
 * claim the request makes checked before the object becomes visible — the signed
 * `x-amz-content-sha256`, `Content-MD5`, `x-amz-decoded-content-length` and the flexible
 * checksum (`x-amz-checksum-*` header or, for streamed SDK uploads, trailer).
 */
import { createHash } from "node:crypto";
import type { IncomingMessage } from "node:http";
import { decodeAwsChunked } from "./aws-chunked.ts";
import { checksumAlgorithm, runningChecksum } from "./checksums.ts";
import type { BeforeCommit } from "./disk-store.ts";
import { S3Error } from "./errors.ts";
import type { VerifiedRequest } from "./sigv4.ts";

export interface IncomingBody {
  bytes: AsyncIterable<Buffer>;
  verify: BeforeCommit;
}

const header = (req: IncomingMessage, name: string) => {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
};

export function incomingBody(req: IncomingMessage, auth: VerifiedRequest | null): IncomingBody {
  const payloadHash = auth?.payloadHash ?? "UNSIGNED-PAYLOAD";
  const chunked =
    payloadHash.startsWith("STREAMING-") ||
    (header(req, "content-encoding") ?? "").split(",").some((e) => e.trim() === "aws-chunked");
  const signedChunks = auth !== null && payloadHash.startsWith("STREAMING-AWS4-HMAC-SHA256-PAYLOAD");
  const decoded = chunked
    ? decodeAwsChunked(req, signedChunks ? { seedSignature: auth.signature, sign: auth.chunkSigner } : undefined)
    : null;

  const checksumHeader = Object.keys(req.headers).find((name) => checksumAlgorithm(name) !== undefined);
  const trailerName = (header(req, "x-amz-trailer") ?? "").trim().toLowerCase();
  const checksumName = checksumHeader ?? (checksumAlgorithm(trailerName) ? trailerName : undefined);
  const checksum = checksumName ? runningChecksum(checksumAlgorithm(checksumName) ?? "") : null;
  const sha256 = /^[0-9a-f]{64}$/.test(payloadHash) ? createHash("sha256") : null;

  async function* bytes() {
    for await (const chunk of decoded?.bytes ?? (req as AsyncIterable<Buffer>)) {
      sha256?.update(chunk);
      checksum?.update(chunk);
      yield chunk;
    }
  }

  const verify: BeforeCommit = ({ size, md5Hex }) => {
    if (sha256 && sha256.digest("hex") !== payloadHash) {
      throw new S3Error(
        400,
        "XAmzContentSHA256Mismatch",
        "The provided 'x-amz-content-sha256' header does not match what was computed.",
      );
    }
    const decodedLength = header(req, "x-amz-decoded-content-length");
    if (chunked && decodedLength !== undefined && Number(decodedLength) !== size) {
      throw new S3Error(
        400,
        "IncompleteBody",
        "You did not provide the number of bytes specified by the Content-Length HTTP header.",
      );
    }
    const contentMd5 = header(req, "content-md5");
    if (contentMd5 !== undefined && Buffer.from(md5Hex, "hex").toString("base64") !== contentMd5) {
      throw new S3Error(400, "BadDigest", "The Content-MD5 you specified did not match what we received.");
    }
    if (checksum && checksumName) {
      const claimed = checksumHeader ? header(req, checksumHeader) : decoded?.trailers.get(checksumName);
      if (claimed !== undefined && claimed !== checksum.digestBase64()) {
        const algorithm = (checksumAlgorithm(checksumName) ?? "").toUpperCase();
        throw new S3Error(400, "BadDigest", `The ${algorithm} you specified did not match the calculated checksum.`);
      }
    }
  };

  return { bytes: bytes(), verify };
}

/** A small body (an XML request document) read whole, with the same integrity checks. */
export async function readSmallBody(body: IncomingBody): Promise<string> {
  const chunks: Buffer[] = [];
  const md5 = createHash("md5");
  for await (const chunk of body.bytes) {
    chunks.push(chunk);
    md5.update(chunk);
  }
  const bytes = Buffer.concat(chunks);
  await body.verify({ size: bytes.length, md5Hex: md5.digest("hex") });
  return bytes.toString("utf8");
}
