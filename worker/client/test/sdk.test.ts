/**
 * The SDK against the real local stack (workerd, redis-server, the S3 store, machine processes
 * running ffmpeg): uploads of both kinds end transcoded, an interrupted multipart upload resumes,
 * errors carry the API's codes, and webhooks verify.
 */

import { mkdtemp, rm, stat } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type LocalStack, startLocalStack } from "@tcoder/local/stack";
import { signPayload } from "@tcoder/worker/contract";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient, TcoderError, type UploadProgress, verifyWebhook } from "../src/node.ts";
import { makeClip, makeRawClip } from "./media.ts";

let dir: string;
let stack: LocalStack;
let client: ReturnType<typeof createClient>;
let smallClip: string;
let bigClip: string;
const callbacks: { body: string; signature: string | undefined }[] = [];
let callbackServer: ReturnType<typeof createServer>;
let callbackUrl: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "tcoder-client-"));
  callbackServer = createServer((req, res) => {
    let body = "";
    req.on("data", (chunk: Buffer) => {
      body += chunk.toString("utf8");
    });
    req.on("end", () => {
      const signature = req.headers["tcoder-signature"];
      callbacks.push({ body, signature: Array.isArray(signature) ? signature[0] : signature });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((done) => callbackServer.listen(0, "127.0.0.1", done));
  callbackUrl = `http://127.0.0.1:${(callbackServer.address() as AddressInfo).port}/hook`;
  [smallClip, bigClip] = await Promise.all([makeClip(join(dir, "small.mp4")), makeRawClip(join(dir, "big.mkv"), 40)]);
  stack = await startLocalStack({
    dir: join(dir, "stack"),
    maxMachines: 1,
    cronIntervalMs: 1_000,
    vars: { ALLOW_INSECURE_CALLBACKS: "true" },
  });
  client = createClient({ baseUrl: stack.cloud.apiUrl, token: stack.cloud.apiToken });
});

afterAll(async () => {
  await stack?.stop();
  await new Promise((done) => callbackServer?.close(done));
  await rm(dir, { recursive: true, force: true });
});

describe("upload", () => {
  it("sends a small file with one presigned PUT; the job transcodes and the signed callback verifies", async () => {
    const progress: UploadProgress[] = [];
    const uploaded = await client.upload(smallClip, {
      preset: "mp4-720p",
      metadata: { origin: "sdk-test" },
      callbackUrl,
      onProgress: (p) => progress.push(p),
    });
    expect(uploaded.input).toMatchObject({ filename: "small.mp4", contentType: "video/mp4" });
    expect(progress.at(-1)).toMatchObject({ fraction: 1, jobId: uploaded.id });
    expect(progress.some((p) => p.partCount !== undefined)).toBe(false);

    const states: string[] = [];
    const job = await client.waitForJob(uploaded.id, { onProgress: (j) => states.push(j.state), timeout: 150_000 });
    expect(job.state).toBe("completed");
    expect(job.metadata).toEqual({ origin: "sdk-test" });
    expect(job.outputs?.mp4?.url).toMatch(/^http/);
    expect(states.at(-1)).toBe("completed");

    const deadline = Date.now() + 30_000;
    while (callbacks.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    const callback = callbacks.find((c) => c.body.includes(uploaded.id));
    expect(callback).toBeDefined();
    const secret = stack.cloud.settings.CALLBACK_SIGNING_SECRET;
    expect(await verifyWebhook(callback?.body ?? "", callback?.signature, secret)).toMatchObject({ ok: true });
    expect(await verifyWebhook(`${callback?.body} `, callback?.signature, secret)).toEqual({
      ok: false,
      reason: "mismatch",
    });
  });

  it("sends a 124 MB source as a parallel multipart upload; the job transcodes it", async () => {
    const size = (await stat(bigClip)).size;
    expect(size).toBeGreaterThan(120 * 1000 * 1000);
    const progress: UploadProgress[] = [];
    const uploaded = await client.upload(bigClip, {
      preset: "mp4-720p",
      partSize: 16 * 1024 * 1024,
      onProgress: (p) => progress.push(p),
    });
    const last = progress.at(-1);
    expect(last).toMatchObject({ loaded: size, total: size, fraction: 1, partCount: 8, partsDone: 8 });
    const fractions = progress.map((p) => p.fraction);
    expect(fractions).toEqual([...fractions].sort((a, b) => a - b));

    const job = await client.waitForJob(uploaded.id, { timeout: 170_000 });
    expect(job.state).toBe("completed");
    expect(job.input.sizeBytes).toBe(size);
    expect(job.probe?.video).toMatchObject({ width: 1920, height: 1080 });
    expect(job.outputs?.mp4).toBeDefined();
  });

  it("resumes an interrupted multipart upload, sending only the parts the store lacks", async () => {
    const source = await makeRawClip(join(dir, "resume.mkv"), 6); // 18.7 MB: 4 parts of 5 MiB
    const size = (await stat(source)).size;
    const partPuts: number[] = [];
    const flaky = createClient({
      baseUrl: stack.cloud.apiUrl,
      token: stack.cloud.apiToken,
      fetch: async (input, init) => {
        const url = new URL(String(input));
        const part = Number(url.searchParams.get("partNumber") ?? 0);
        if (part >= 3) throw new TypeError("connection reset (simulated)");
        if (part > 0) partPuts.push(part);
        return fetch(input, init);
      },
    });
    const failure = await flaky
      .upload(source, {
        preset: "mp4-720p",
        multipartThreshold: 0,
        partSize: 5 * 1024 * 1024,
        retries: 1,
        concurrency: 1,
      })
      .catch((err: unknown) => err);
    expect(failure).toBeInstanceOf(TcoderError);
    const { code, jobId } = failure as TcoderError;
    expect(code).toBe("upload_failed");
    expect(jobId).toMatch(/^job_/);
    expect((await client.getJob(jobId as string)).state).toBe("awaiting_upload");
    const open = await client.getUpload(jobId as string);
    expect(open.partCount).toBe(4);
    expect(open.parts.map((p) => p.partNumber)).toEqual([1, 2]);

    const sent: number[] = [];
    const resumer = createClient({
      baseUrl: stack.cloud.apiUrl,
      token: stack.cloud.apiToken,
      fetch: (input, init) => {
        const part = new URL(String(input)).searchParams.get("partNumber");
        if (part) sent.push(Number(part));
        return fetch(input, init);
      },
    });
    const progress: UploadProgress[] = [];
    const resumed = await resumer.resumeUpload(jobId as string, source, { onProgress: (p) => progress.push(p) });
    expect(sent.sort()).toEqual([3, 4]);
    expect(progress[0]).toMatchObject({ partsDone: 2, partCount: 4 });
    expect(progress.at(-1)).toMatchObject({ loaded: size, fraction: 1 });
    expect(resumed.id).toBe(jobId);

    // The store's CompleteMultipartUpload event queues the job; then it is not worth transcoding.
    const deadline = Date.now() + 30_000;
    let job = await client.getJob(resumed.id);
    while (job.state === "awaiting_upload" && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      job = await client.getJob(resumed.id);
    }
    expect(job.state).not.toBe("awaiting_upload");
    expect(job.input.sizeBytes).toBe(size);
    await client.cancel(job.id).catch(() => undefined);
  });
});

describe("the multipart API is bound to its job", () => {
  it("refuses part numbers beyond the plan, incomplete part lists, and a job whose upload is over", async () => {
    const created = (await fetch(`${stack.cloud.apiUrl}/v1/uploads`, {
      method: "POST",
      headers: { authorization: `Bearer ${stack.cloud.apiToken}`, "content-type": "application/json" },
      body: JSON.stringify({ filename: "x.mp4", contentType: "video/mp4", size: 11 * 1024 * 1024 }),
    }).then((r) => r.json())) as { jobId: string };
    const api = (method: string, path: string, body?: unknown) =>
      fetch(`${stack.cloud.apiUrl}/v1/uploads/${created.jobId}/multipart${path}`, {
        method,
        headers: { authorization: `Bearer ${stack.cloud.apiToken}`, "content-type": "application/json" },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });

    const notStarted = await api("POST", "/parts", { partNumbers: [1] });
    expect(notStarted.status).toBe(409);
    expect(await notStarted.json()).toMatchObject({ code: "invalid_state" });

    const start = await api("POST", "", { partSizeBytes: 5 * 1024 * 1024 });
    expect(start.status).toBe(201);
    expect(await start.json()).toMatchObject({
      partCount: 3,
      partSizeBytes: 5 * 1024 * 1024,
      sizeBytes: 11 * 1024 * 1024,
    });
    expect((await api("POST", "", {})).status).toBe(200);

    // Each URL signs its part's size: a longer body is refused by the store itself.
    const urls = (await (await api("POST", "/parts", { partNumbers: [1, 3] })).json()) as {
      parts: { partNumber: number; url: string; headers: { "content-length": string } }[];
    };
    expect(urls.parts.map((p) => [p.partNumber, p.headers["content-length"]])).toEqual([
      [1, String(5 * 1024 * 1024)],
      [3, String(1024 * 1024)],
    ]);
    const last = urls.parts[1];
    const oversized = await fetch(last?.url ?? "", { method: "PUT", body: new Uint8Array(2 * 1024 * 1024) });
    expect(oversized.status).toBe(403);
    const exact = await fetch(last?.url ?? "", { method: "PUT", body: new Uint8Array(1024 * 1024) });
    expect(exact.status).toBe(200);

    const beyond = await api("POST", "/parts", { partNumbers: [4] });
    expect(beyond.status).toBe(400);
    expect(await beyond.json()).toMatchObject({ code: "invalid_request" });

    const missing = await api("POST", "/complete", { parts: [{ partNumber: 1, etag: "x" }] });
    expect(missing.status).toBe(400);

    expect((await api("DELETE", "")).status).toBe(204);
    expect((await api("GET", "")).status).toBe(409);

    await client.cancel(created.jobId);
    const over = await api("POST", "", {});
    expect(over.status).toBe(409);
    expect(await over.json()).toMatchObject({ code: "invalid_state" });
  });
});

describe("jobs", () => {
  it("lists every job across pages and reports API errors with their codes", async () => {
    const seen: string[] = [];
    for await (const job of client.listJobs({ limit: 1 })) seen.push(job.id);
    expect(seen.length).toBeGreaterThanOrEqual(4);
    expect(new Set(seen).size).toBe(seen.length);

    const missing = await client.getJob("job_0000000000000000000000000a").catch((err: unknown) => err);
    expect(missing).toMatchObject({ code: "job_not_found", status: 404 });

    const stranger = createClient({ baseUrl: stack.cloud.apiUrl, token: "not-the-token" });
    await expect(stranger.getJob(seen[0] as string)).rejects.toMatchObject({ code: "unauthorized", status: 401 });

    const completed = seen[seen.length - 1] as string;
    await expect(client.cancel(completed)).rejects.toMatchObject({ code: "invalid_state", status: 409 });
  });

  it("gives up waiting with a timeout error", async () => {
    // A job whose source never arrives waits for it (until its upload expires): it ends in no 300 ms.
    const created = await client.createUpload({ filename: "never.mp4", contentType: "video/mp4", size: 1024 });
    await expect(client.waitForJob(created.jobId, { timeout: 300, interval: 100 })).rejects.toMatchObject({
      code: "timeout",
    });
    await client.cancel(created.jobId).catch(() => undefined);
  });
});

describe("verifyWebhook", () => {
  const secret = "whsec_test_0123456789abcdef";
  const body = JSON.stringify({ type: "job.completed", job: { id: "job_x" } });

  it("accepts a good signature and rejects forged, tampered and expired ones", async () => {
    const now = Math.floor(Date.now() / 1000);
    const good = await signPayload(secret, body, now);
    expect(await verifyWebhook(body, good, secret)).toEqual({ ok: true, timestamp: now });
    expect(await verifyWebhook(body, await signPayload("another-secret-entirely", body, now), secret)).toEqual({
      ok: false,
      reason: "mismatch",
    });
    expect(await verifyWebhook(body.replace("completed", "failed"), good, secret)).toMatchObject({ ok: false });
    const old = await signPayload(secret, body, now - 600);
    expect(await verifyWebhook(body, old, secret)).toEqual({ ok: false, reason: "stale" });
    expect(await verifyWebhook(body, old, secret, { tolerance: 900 })).toMatchObject({ ok: true });
    expect(await verifyWebhook(body, "t=abc,v1=zz", secret)).toEqual({ ok: false, reason: "malformed" });
    expect(await verifyWebhook(body, undefined, secret)).toEqual({ ok: false, reason: "malformed" });
  });
});
