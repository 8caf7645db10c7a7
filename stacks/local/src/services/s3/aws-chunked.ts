/**
 * Decoding of `Content-Encoding: aws-chunked` bodies, which AWS SDK v3 sends for streamed uploads
 * (`STREAMING-UNSIGNED-PAYLOAD-TRAILER`: chunks plus a checksum trailer) and SigV4 streaming
 * uploads (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]`: every chunk signed).
 *   <hex size>[;chunk-signature=<sig>]\r\n<bytes>\r\n … 0[;chunk-signature=<sig>]\r\n[<trailer>:<value>\r\n]*\r\n
 * https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming.html
 */
import { createHash } from "node:crypto";
import { S3Error } from "./errors.ts";
import type { ChunkSigner } from "./sigv4.ts";

export interface ChunkVerification {
  seedSignature: string;
  sign: ChunkSigner;
}

export interface DecodedBody {
  /** The object's bytes, without framing. */
  bytes: AsyncGenerator<Buffer>;
  /** Trailer headers (lower-case names); complete once `bytes` is exhausted. */
  trailers: Map<string, string>;
}

const incomplete = () => new S3Error(400, "IncompleteBody", "The aws-chunked body ended before its final chunk.");

export function decodeAwsChunked(source: AsyncIterable<Buffer>, verification?: ChunkVerification): DecodedBody {
  const trailers = new Map<string, string>();
  const reader = new ByteReader(source);

  async function* bytes(): AsyncGenerator<Buffer> {
    let previousSignature = verification?.seedSignature ?? "";
    for (;;) {
      const header = await reader.line();
      if (header === null) throw incomplete();
      const [sizeHex = "", ...extensions] = header.split(";");
      const size = Number.parseInt(sizeHex, 16);
      if (!Number.isFinite(size) || size < 0)
        throw new S3Error(400, "InvalidChunkSizeError", "Bad aws-chunked size line.");
      const signature = extensions.find((e) => e.startsWith("chunk-signature="))?.slice("chunk-signature=".length);
      const hash = verification ? createHash("sha256") : null;
      for await (const piece of reader.take(size)) {
        hash?.update(piece);
        yield piece;
      }
      if (verification) {
        const expected = verification.sign(previousSignature, hash?.digest("hex") ?? "");
        if (signature !== expected) {
          throw new S3Error(403, "SignatureDoesNotMatch", "An aws-chunked chunk signature does not match.");
        }
        previousSignature = expected;
      }
      if (size === 0) break;
      if ((await reader.line()) !== "") throw new S3Error(400, "IncompleteBody", "A chunk is longer than its size.");
    }
    for (;;) {
      const line = await reader.line();
      if (line === null || line === "") break;
      const colon = line.indexOf(":");
      if (colon > 0) trailers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
    }
  }

  return { bytes: bytes(), trailers };
}

/** Pulls lines and exact byte counts out of a stream of arbitrary chunks. */
class ByteReader {
  private buffered: Buffer = Buffer.alloc(0);
  private readonly iterator: AsyncIterator<Buffer>;
  private ended = false;

  constructor(source: AsyncIterable<Buffer>) {
    this.iterator = source[Symbol.asyncIterator]();
  }

  private async fill(): Promise<boolean> {
    if (this.ended) return false;
    const next = await this.iterator.next();
    if (next.done) {
      this.ended = true;
      return false;
    }
    this.buffered = this.buffered.length === 0 ? next.value : Buffer.concat([this.buffered, next.value]);
    return true;
  }

  /** The next line without its CRLF, or null at the end of the stream. */
  async line(): Promise<string | null> {
    for (;;) {
      const end = this.buffered.indexOf("\r\n");
      if (end >= 0) {
        const line = this.buffered.subarray(0, end).toString("latin1");
        this.buffered = this.buffered.subarray(end + 2);
        return line;
      }
      if (!(await this.fill())) {
        if (this.buffered.length === 0) return null;
        const rest = this.buffered.toString("latin1");
        this.buffered = Buffer.alloc(0);
        return rest;
      }
    }
  }

  async *take(count: number): AsyncGenerator<Buffer> {
    let remaining = count;
    while (remaining > 0) {
      if (this.buffered.length === 0 && !(await this.fill())) throw incomplete();
      const piece = this.buffered.subarray(0, Math.min(remaining, this.buffered.length));
      this.buffered = this.buffered.subarray(piece.length);
      remaining -= piece.length;
      yield piece;
    }
  }
}
