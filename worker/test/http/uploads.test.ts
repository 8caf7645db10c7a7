import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { app } from "../../src/app.ts";
import { API_TOKEN, type ControlPlaneServices, startControlPlaneServices } from "./harness.ts";

let cp: ControlPlaneServices;
beforeAll(async () => {
  cp = await startControlPlaneServices({ MAX_UPLOAD_BYTES: "1048576", UPLOAD_EXPIRY_SECONDS: "900" });
});
afterAll(() => cp?.stop());

interface UploadAnswer {
  jobId: string;
  upload: { url: string; method: "PUT"; headers: Record<string, string>; expiresAt: string };
  job: {
    id: string;
    state: string;
    preset: string;
    input: { key: string; filename?: string; contentType?: string; sizeBytes?: number };
    uploadExpiresAt?: string;
    createdAt: string;
  };
}

const source = new Uint8Array(4096).map((_, i) => i % 251);

async function createUpload(body: Record<string, unknown>) {
  const res = await cp.request("/v1/uploads", { method: "POST", json: body });
  return { res, body: (await res.json()) as UploadAnswer & { code?: string; detail?: string } };
}

describe("POST /v1/uploads", () => {
  it("creates an awaiting_upload job and a presigned PUT bound to the declared type and size", async () => {
    const { res, body } = await createUpload({
      filename: "holiday.mp4",
      contentType: "video/mp4",
      size: source.length,
    });
    expect(res.status).toBe(201);
    expect(body.jobId).toMatch(/^job_[0-9a-z]{26}$/);
    expect(body.job).toMatchObject({
      id: body.jobId,
      state: "awaiting_upload",
      preset: "hls-ladder",
      input: {
        key: `inputs/${body.jobId}/holiday.mp4`,
        filename: "holiday.mp4",
        contentType: "video/mp4",
        sizeBytes: source.length,
      },
    });
    const created = Date.parse(body.job.createdAt);
    expect(Date.parse(body.job.uploadExpiresAt ?? "")).toBe(created + 900_000);
    expect(Date.parse(body.upload.expiresAt)).toBeLessThanOrEqual(Date.parse(body.job.uploadExpiresAt ?? ""));
    expect(body.upload.method).toBe("PUT");
    expect(body.upload.headers).toEqual({ "content-type": "video/mp4", "content-length": String(source.length) });
    const url = new URL(body.upload.url);
    expect(url.pathname).toBe(`/tcoder-inputs/inputs/${body.jobId}/holiday.mp4`);
    expect(url.searchParams.get("X-Amz-SignedHeaders")).toBe("content-length;content-type;host");
    expect(url.searchParams.get("X-Amz-Expires")).toBe("900");
  });

  it("the returned URL and headers upload the file to the store", async () => {
    const { body } = await createUpload({ filename: "clip.mp4", contentType: "video/mp4", size: source.length });
    const put = await fetch(body.upload.url, { method: "PUT", headers: body.upload.headers, body: source });
    expect(put.status).toBe(200);
    const job = await (await cp.request(`/v1/jobs/${body.jobId}`)).json();
    expect(job).toMatchObject({ id: body.jobId, input: { key: `inputs/${body.jobId}/clip.mp4` } });
  });

  it("the store refuses a PUT of another size than declared", async () => {
    const { body } = await createUpload({ filename: "clip.mp4", contentType: "video/mp4", size: source.length });
    const bigger = new Uint8Array(source.length + 1);
    const put = await fetch(body.upload.url, {
      method: "PUT",
      headers: { ...body.upload.headers, "content-length": String(bigger.length) },
      body: bigger,
    });
    expect(put.status).toBe(403);
  });

  it("the store refuses a PUT with another content type than declared", async () => {
    const { body } = await createUpload({ filename: "clip.mp4", contentType: "video/mp4", size: source.length });
    const put = await fetch(body.upload.url, {
      method: "PUT",
      headers: { ...body.upload.headers, "content-type": "text/html" },
      body: source,
    });
    expect(put.status).toBe(403);
  });

  it("keeps the original name on the job and derives a safe object key from it", async () => {
    const filename = "Café ?#%2e%2e clip (final).MOV";
    const { res, body } = await createUpload({ filename, contentType: "video/quicktime", size: 10 });
    expect(res.status).toBe(201);
    expect(body.job.input.filename).toBe(filename);
    expect(body.job.input.key).toBe(`inputs/${body.jobId}/Café_2e_2e_clip_final.mov`);
  });

  it.each(["../../etc/passwd.mp4", "a/b.mp4", "a\\b.mp4", "clip\u0000.mp4", "clip\r\n.mp4", `${"x".repeat(252)}.mp4`])(
    "refuses the path-trick or invalid name %j with 400 invalid_request",
    async (filename) => {
      const { res, body } = await createUpload({ filename, contentType: "video/mp4", size: 10 });
      expect(res.status).toBe(400);
      expect(body.code).toBe("invalid_request");
    },
  );

  it.each(["image/png", "text/html", "application/octet-stream", "application/pdf"])(
    "refuses the non-media type %s with unsupported_media_type",
    async (contentType) => {
      const { res, body } = await createUpload({ filename: "a.mp4", contentType, size: 10 });
      expect(res.status).toBe(400);
      expect(body.code).toBe("unsupported_media_type");
    },
  );

  it("accepts audio", async () => {
    const { res } = await createUpload({ filename: "talk.m4a", contentType: "audio/mp4", size: 10 });
    expect(res.status).toBe(201);
  });

  it("refuses size 0 with invalid_request and a size over MAX_UPLOAD_BYTES with 413 upload_too_large", async () => {
    const empty = await createUpload({ filename: "a.mp4", contentType: "video/mp4", size: 0 });
    expect(empty.res.status).toBe(400);
    expect(empty.body.code).toBe("invalid_request");
    const big = await createUpload({ filename: "a.mp4", contentType: "video/mp4", size: 1048577 });
    expect(big.res.status).toBe(413);
    expect(big.body.code).toBe("upload_too_large");
  });

  it("refuses an unknown preset with 400 unknown_preset and accepts a known one", async () => {
    const unknown = await createUpload({ filename: "a.mp4", contentType: "video/mp4", size: 10, preset: "8k-hdr" });
    expect(unknown.res.status).toBe(400);
    expect(unknown.body.code).toBe("unknown_preset");
    const known = await createUpload({ filename: "a.mp4", contentType: "video/mp4", size: 10, preset: "mp4-720p" });
    expect(known.res.status).toBe(201);
    expect(known.body.job.preset).toBe("mp4-720p");
  });

  it.each(["http://hooks.example.com/cb", "https://127.0.0.1/cb", "https://localhost/cb", "https://[::1]/cb"])(
    "refuses the callback URL %s with 400 invalid_callback_url",
    async (callbackUrl) => {
      const { res, body } = await createUpload({ filename: "a.mp4", contentType: "video/mp4", size: 10, callbackUrl });
      expect(res.status).toBe(400);
      expect(body.code).toBe("invalid_callback_url");
    },
  );

  it("keeps a public https callback URL and metadata on the job", async () => {
    const { res, body } = await createUpload({
      filename: "a.mp4",
      contentType: "video/mp4",
      size: 10,
      callbackUrl: "https://hooks.example.com/tcoder",
      metadata: { customer: "c-42" },
    });
    expect(res.status).toBe(201);
    expect(body.job).toMatchObject({ callbackUrl: "https://hooks.example.com/tcoder", metadata: { customer: "c-42" } });
  });
});

describe("callback URLs in local stacks", () => {
  it("accept plain http to loopback when ALLOW_INSECURE_CALLBACKS is true", async () => {
    const res = await app.request(
      "/v1/uploads",
      {
        method: "POST",
        headers: { authorization: `Bearer ${API_TOKEN}`, "content-type": "application/json" },
        body: JSON.stringify({
          filename: "a.mp4",
          contentType: "video/mp4",
          size: 10,
          callbackUrl: "http://127.0.0.1:9999/cb",
        }),
      },
      { ...cp.env, ALLOW_INSECURE_CALLBACKS: "true" },
    );
    expect(res.status).toBe(201);
  });
});
