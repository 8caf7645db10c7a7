/**
 * S3 multipart uploads (R2 in the cloud, the on-disk store locally): create, presigned UploadPart
 * URLs, list, complete, abort. The store answers in XML (read with xml.ts).
 */
import { objectUrl, presignUrl, type S3Settings, StorageError, s3Fetch } from "./s3.ts";
import { element, elements, escapeXml } from "./xml.ts";

/** The store refused the parts a client listed (unknown part, wrong ETag, a part too small, parts of unequal sizes). */
export class InvalidPartsError extends Error {
  override readonly name = "InvalidPartsError";
}

export interface UploadedPart {
  partNumber: number;
  etag: string;
  sizeBytes: number;
}

export interface PresignedPart {
  partNumber: number;
  url: string;
  method: "PUT";
  /** Signed: the store refuses a part of another size. */
  headers: { "content-length": string };
}

const unquote = (etag: string) => etag.replaceAll('"', "");

async function failure(res: Response, what: string): Promise<never> {
  const body = await res.text().catch(() => "");
  const code = element(body, "Code") ?? "";
  if (res.status === 400 && /^(InvalidPart|InvalidPartOrder|EntityTooSmall)$/.test(code))
    throw new InvalidPartsError(element(body, "Message") ?? code);
  throw new StorageError(`${what} answered ${res.status}${code ? ` ${code}` : ""}`);
}

export async function createMultipartUpload(
  settings: S3Settings,
  args: { bucket: string; key: string; contentType: string | null },
): Promise<string> {
  const res = await s3Fetch(
    settings,
    `${objectUrl(settings, args.bucket, args.key)}?uploads`,
    { method: "POST", headers: args.contentType ? { "content-type": args.contentType } : {} },
    "CreateMultipartUpload",
  );
  if (!res.ok) return failure(res, "CreateMultipartUpload");
  const uploadId = element(await res.text(), "UploadId");
  if (!uploadId) throw new StorageError("CreateMultipartUpload answered without an UploadId");
  return uploadId;
}

/** Presigned UploadPart URLs, each bound to its part's exact size. */
export async function presignParts(
  settings: S3Settings,
  args: {
    bucket: string;
    key: string;
    uploadId: string;
    parts: { partNumber: number; sizeBytes: number }[];
    expiresInSeconds: number;
    nowMs: number;
  },
): Promise<PresignedPart[]> {
  return Promise.all(
    args.parts.map(async ({ partNumber, sizeBytes }) => {
      const url = new URL(objectUrl(settings, args.bucket, args.key));
      url.searchParams.set("partNumber", String(partNumber));
      url.searchParams.set("uploadId", args.uploadId);
      const headers = { "content-length": String(sizeBytes) };
      const { expiresInSeconds, nowMs } = args;
      const signed = await presignUrl(settings, { url, method: "PUT", headers, expiresInSeconds, nowMs });
      return { partNumber, url: signed.url, method: "PUT" as const, headers };
    }),
  );
}

/** Every part the store holds for the upload (following ListParts pages); null for an unknown upload. */
export async function listUploadedParts(
  settings: S3Settings,
  args: { bucket: string; key: string; uploadId: string },
): Promise<UploadedPart[] | null> {
  const parts: UploadedPart[] = [];
  let marker = 0;
  for (let page = 0; page < 100; page++) {
    const url = new URL(objectUrl(settings, args.bucket, args.key));
    url.searchParams.set("uploadId", args.uploadId);
    url.searchParams.set("part-number-marker", String(marker));
    const res = await s3Fetch(settings, url.toString(), { method: "GET" }, "ListParts");
    if (res.status === 404) return null;
    if (!res.ok) return failure(res, "ListParts");
    const xml = await res.text();
    for (const part of elements(xml, "Part"))
      parts.push({
        partNumber: Number(element(part, "PartNumber")),
        etag: unquote(element(part, "ETag") ?? ""),
        sizeBytes: Number(element(part, "Size")),
      });
    if (element(xml, "IsTruncated") !== "true") break;
    const next = Number(element(xml, "NextPartNumberMarker"));
    if (!(next > marker)) break;
    marker = next;
  }
  return parts;
}

export async function completeMultipartUpload(
  settings: S3Settings,
  args: { bucket: string; key: string; uploadId: string; parts: { partNumber: number; etag: string }[] },
): Promise<{ etag: string }> {
  const body = `<CompleteMultipartUpload>${args.parts
    .map((p) => `<Part><PartNumber>${p.partNumber}</PartNumber><ETag>"${escapeXml(unquote(p.etag))}"</ETag></Part>`)
    .join("")}</CompleteMultipartUpload>`;
  const url = `${objectUrl(settings, args.bucket, args.key)}?uploadId=${encodeURIComponent(args.uploadId)}`;
  const res = await s3Fetch(
    settings,
    url,
    { method: "POST", headers: { "content-type": "application/xml" }, body },
    "CompleteMultipartUpload",
  );
  const text = await res.text();
  // S3 may answer 200 with an <Error> document when completion fails late.
  if (!res.ok || text.includes("<Error>"))
    return failure(new Response(text, { status: res.ok ? 400 : res.status }), "CompleteMultipartUpload");
  return { etag: unquote(element(text, "ETag") ?? "") };
}

export async function abortMultipartUpload(
  settings: S3Settings,
  args: { bucket: string; key: string; uploadId: string },
): Promise<void> {
  const url = `${objectUrl(settings, args.bucket, args.key)}?uploadId=${encodeURIComponent(args.uploadId)}`;
  const res = await s3Fetch(settings, url, { method: "DELETE" }, "AbortMultipartUpload");
  if (!res.ok && res.status !== 404) return failure(res, "AbortMultipartUpload");
}
