/**
 * The flexible checksums AWS SDK v3 attaches to uploads (`x-amz-checksum-<algorithm>`, base64 of
 * the big-endian digest), as a header or an aws-chunked trailer. Algorithms Node lacks
 * (crc32c, crc64nvme) are accepted unverified.
 */
import { createHash } from "node:crypto";
import { crc32 } from "node:zlib";

export interface RunningChecksum {
  update(chunk: Buffer): void;
  digestBase64(): string;
}

export function runningChecksum(algorithm: string): RunningChecksum | null {
  if (algorithm === "crc32") {
    let value = 0;
    return {
      update: (chunk) => {
        value = crc32(chunk, value);
      },
      digestBase64: () => {
        const bytes = Buffer.alloc(4);
        bytes.writeUInt32BE(value >>> 0);
        return bytes.toString("base64");
      },
    };
  }
  if (algorithm === "sha1" || algorithm === "sha256") {
    const hash = createHash(algorithm);
    return { update: (chunk) => hash.update(chunk), digestBase64: () => hash.digest("base64") };
  }
  return null;
}

/** `x-amz-checksum-crc32: <b64>` style header or trailer names → algorithm. */
export const checksumAlgorithm = (name: string) => /^x-amz-checksum-([a-z0-9]+)$/.exec(name.toLowerCase())?.[1];
