/**
 * Listing and removing objects under a prefix, a page (and one `DeleteObjects` batch) of up to
 * 1,000 keys at a time, so a package of thousands of segments goes in a few requests.
 */
import { type S3Settings, StorageError, s3Fetch } from "./s3.ts";
import { element, elements, escapeXml } from "./xml.ts";

/** S3's ceiling for both a ListObjectsV2 page and a DeleteObjects request. */
export const MAX_KEYS_PER_REQUEST = 1000;

const bucketUrl = (settings: Pick<S3Settings, "S3_ENDPOINT">, bucket: string) =>
  `${settings.S3_ENDPOINT.replace(/\/+$/, "")}/${bucket}`;

/** One page of keys under `prefix` (ListObjectsV2), and whether more follow. */
export async function listKeyPage(
  settings: S3Settings,
  bucket: string,
  prefix: string,
  maxKeys = MAX_KEYS_PER_REQUEST,
): Promise<{ keys: string[]; truncated: boolean }> {
  const url = new URL(bucketUrl(settings, bucket));
  url.searchParams.set("list-type", "2");
  url.searchParams.set("prefix", prefix);
  url.searchParams.set("max-keys", String(maxKeys));
  const res = await s3Fetch(settings, url.toString(), { method: "GET" }, "ListObjectsV2");
  if (!res.ok) throw new StorageError(`ListObjectsV2 answered ${res.status}`);
  const xml = await res.text();
  const keys = elements(xml, "Contents").map((entry) => element(entry, "Key") ?? "");
  return { keys: keys.filter((key) => key !== ""), truncated: element(xml, "IsTruncated") === "true" };
}

const base64 = (bytes: ArrayBuffer) => btoa(String.fromCharCode(...new Uint8Array(bytes)));

/**
 * Removes up to 1,000 keys in one `DeleteObjects` call. The body carries a SHA-256 checksum (S3
 * requires Content-MD5 or a checksum on this call; WebCrypto has no MD5). Keys the store reports
 * as not deleted make it throw, so the caller's pass does not count as done.
 */
export async function deleteKeyBatch(settings: S3Settings, bucket: string, keys: readonly string[]): Promise<void> {
  if (keys.length === 0) return;
  if (keys.length > MAX_KEYS_PER_REQUEST) throw new RangeError(`at most ${MAX_KEYS_PER_REQUEST} keys per batch`);
  const body = `<?xml version="1.0" encoding="UTF-8"?><Delete><Quiet>true</Quiet>${keys
    .map((key) => `<Object><Key>${escapeXml(key)}</Key></Object>`)
    .join("")}</Delete>`;
  const checksum = base64(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(body)));
  const res = await s3Fetch(
    settings,
    `${bucketUrl(settings, bucket)}?delete`,
    {
      method: "POST",
      headers: {
        "content-type": "application/xml",
        "x-amz-sdk-checksum-algorithm": "SHA256",
        "x-amz-checksum-sha256": checksum,
      },
      body,
    },
    "DeleteObjects",
  );
  const text = await res.text();
  if (!res.ok) throw new StorageError(`DeleteObjects answered ${res.status} ${element(text, "Code") ?? ""}`.trim());
  const failed = elements(text, "Error");
  if (failed.length > 0)
    throw new StorageError(
      `DeleteObjects left ${failed.length} object(s): ${element(failed[0] ?? "", "Code") ?? "unknown error"}`,
    );
}

/**
 * Removes every object under `prefix`, a listed page at a time, up to `maxBatches` batches; returns
 * how many it removed and whether the prefix is now empty (false: more remain for another pass).
 */
export async function deletePrefix(
  settings: S3Settings,
  bucket: string,
  prefix: string,
  maxBatches = 50,
): Promise<{ deleted: number; empty: boolean }> {
  let deleted = 0;
  for (let batch = 0; batch < maxBatches; batch++) {
    // Always the first page: what was listed before is gone, so there is no cursor to keep.
    const page = await listKeyPage(settings, bucket, prefix);
    if (page.keys.length === 0) return { deleted, empty: true };
    await deleteKeyBatch(settings, bucket, page.keys);
    deleted += page.keys.length;
  }
  return { deleted, empty: (await listKeyPage(settings, bucket, prefix, 1)).keys.length === 0 };
}
