import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startS3Store } from "@tcoder/local/services/s3-store";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { headObject, presignPut } from "../../src/storage/s3.ts";

const credentials = { accessKeyId: "storage-test-key", secretAccessKey: "storage-test-secret-0123456789" };
let dir: string;
let store: Awaited<ReturnType<typeof startS3Store>>;
let settings: { S3_ENDPOINT: string; S3_REGION: string; S3_ACCESS_KEY_ID: string; S3_SECRET_ACCESS_KEY: string };

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "tcoder-storage-"));
  store = await startS3Store({ dir, credentials, region: "auto", buckets: ["in"] });
  settings = {
    S3_ENDPOINT: store.endpoint,
    S3_REGION: "auto",
    S3_ACCESS_KEY_ID: credentials.accessKeyId,
    S3_SECRET_ACCESS_KEY: credentials.secretAccessKey,
  };
});
afterAll(async () => {
  await store?.stop();
  await rm(dir, { recursive: true, force: true });
});

const body = new TextEncoder().encode("not really a video, but the store does not care");

const presign = (key: string, overrides: Partial<Parameters<typeof presignPut>[1]> = {}) =>
  presignPut(settings, {
    bucket: "in",
    key,
    contentType: "video/mp4",
    sizeBytes: body.length,
    expiresInSeconds: 600,
    nowMs: Date.now(),
    ...overrides,
  });

describe("presigned PUTs", () => {
  it("upload with exactly the returned headers, and HEAD then sees the object", async () => {
    const upload = await presign("inputs/job_a/clip.mp4");
    const put = await fetch(upload.url, { method: "PUT", headers: upload.headers, body });
    expect(put.status).toBe(200);
    expect(await headObject(settings, "in", "inputs/job_a/clip.mp4")).toMatchObject({
      sizeBytes: body.length,
      contentType: "video/mp4",
    });
  });

  it("sign unicode keys the store agrees with", async () => {
    const key = "inputs/job_u/Café_東京.mov";
    const upload = await presign(key, { contentType: "video/quicktime" });
    const put = await fetch(upload.url, { method: "PUT", headers: upload.headers, body });
    expect(put.status).toBe(200);
    expect(await headObject(settings, "in", key)).not.toBeNull();
  });

  it("are refused for a body of another size", async () => {
    const upload = await presign("inputs/job_b/clip.mp4");
    const other = new Uint8Array(body.length * 2);
    const put = await fetch(upload.url, {
      method: "PUT",
      headers: { ...upload.headers, "content-length": String(other.length) },
      body: other,
    });
    expect(put.status).toBe(403);
    expect(await headObject(settings, "in", "inputs/job_b/clip.mp4")).toBeNull();
  });

  it("are refused with another content type", async () => {
    const upload = await presign("inputs/job_c/clip.mp4");
    const put = await fetch(upload.url, {
      method: "PUT",
      headers: { ...upload.headers, "content-type": "text/html" },
      body,
    });
    expect(put.status).toBe(403);
  });

  it("are refused for another key", async () => {
    const upload = await presign("inputs/job_d/clip.mp4");
    const url = upload.url.replace("job_d", "job_e");
    const put = await fetch(url, { method: "PUT", headers: upload.headers, body });
    expect(put.status).toBe(403);
  });

  it("are refused once expired", async () => {
    const upload = await presign("inputs/job_f/clip.mp4", { nowMs: Date.now() - 120_000, expiresInSeconds: 60 });
    const put = await fetch(upload.url, { method: "PUT", headers: upload.headers, body });
    expect(put.status).toBe(403);
  });

  it("never outlive a week", async () => {
    const upload = await presign("inputs/job_g/clip.mp4", { expiresInSeconds: 30 * 24 * 3600 });
    expect(new URL(upload.url).searchParams.get("X-Amz-Expires")).toBe(String(7 * 24 * 3600));
  });
});

describe("headObject", () => {
  it("answers null for a missing object", async () => {
    expect(await headObject(settings, "in", "inputs/none/here.mp4")).toBeNull();
  });

  it("throws for a store that signs with other credentials", async () => {
    await expect(
      headObject({ ...settings, S3_SECRET_ACCESS_KEY: "wrong-secret" }, "in", "inputs/job_a/clip.mp4"),
    ).rejects.toThrow(/403/);
  });
});
