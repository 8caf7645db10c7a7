/**
 * What R2 refuses to store, refused here with the status and code R2 answers
 * (https://developers.cloudflare.com/r2/api/error-codes/, limits from
 * https://developers.cloudflare.com/r2/platform/limits/ via the contract): an upload or part over
 * 4.995 GiB is `EntityTooLarge`, a key over 1,024 bytes `InvalidObjectName` (R2's code for it;
 * AWS says `KeyTooLongError`), custom metadata over 8,192 bytes `MetadataTooLarge`.
 */
import type { IncomingMessage } from "node:http";
import { MAX_KEY_BYTES, MAX_METADATA_BYTES, MAX_SINGLE_UPLOAD_BYTES } from "@tcoder/worker/contract/object-store.ts";
import { S3Error } from "./errors.ts";

export const entityTooLarge = () =>
  new S3Error(400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed object size.", {
    MaxSizeAllowed: String(MAX_SINGLE_UPLOAD_BYTES),
  });

export function checkKey(key: string) {
  if (Buffer.byteLength(key) > MAX_KEY_BYTES) {
    throw new S3Error(400, "InvalidObjectName", `Object key is longer than ${MAX_KEY_BYTES} bytes.`);
  }
}

/** `userMetadata`: names without the `x-amz-meta-` prefix, as S3 and R2 count them. */
export function checkMetadata(userMetadata: Record<string, string>) {
  const size = Object.entries(userMetadata).reduce(
    (sum, [k, v]) => sum + Buffer.byteLength(k) + Buffer.byteLength(v),
    0,
  );
  if (size > MAX_METADATA_BYTES) {
    throw new S3Error(400, "MetadataTooLarge", "Your metadata headers exceed the maximum allowed metadata size.", {
      Size: String(size),
      MaxSizeAllowed: String(MAX_METADATA_BYTES),
    });
  }
}

/** The size a request says its body has: the decoded length of an aws-chunked body, else Content-Length. */
export function declaredSize(req: IncomingMessage): number {
  const decoded = req.headers["x-amz-decoded-content-length"];
  return Number((Array.isArray(decoded) ? decoded[0] : decoded) ?? req.headers["content-length"] ?? 0);
}

/**
 * One upload's bytes (an object or a part), refused before a byte is stored when the request
 * declares too many, and as soon as more arrive than the limit when it does not.
 */
export function withinUploadLimit(req: IncomingMessage, bytes: AsyncIterable<Buffer>): AsyncIterable<Buffer> {
  if (declaredSize(req) > MAX_SINGLE_UPLOAD_BYTES) throw entityTooLarge();
  return (async function* () {
    let size = 0;
    for await (const chunk of bytes) {
      size += chunk.length;
      if (size > MAX_SINGLE_UPLOAD_BYTES) throw entityTooLarge();
      yield chunk;
    }
  })();
}
