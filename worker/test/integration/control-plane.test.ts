/**
 * The control plane as deployed: the worker bundle in workerd (Miniflare) with real queues and
 * cron, real Redis behind the Upstash bridge, the SigV4 S3 store emitting R2 events, and the local
 * Fly Machines API. Machines are the no-op runner: they exist but never claim, so the tests
 * claim and report as a machine would (claimNextJob + signed events).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type LocalCloud, startLocalCloud } from "@tcoder/local/local-cloud";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { queues } from "../../src/bindings.ts";
import {
  type Job,
  type R2EventNotification,
  SIGNATURE_HEADER,
  signPayload,
  verifySignature,
} from "../../src/contract/index.ts";
import { claimNextJob, keys } from "../../src/state/index.ts";

const MAX_MACHINES = 2;
const MAX_ATTEMPTS = 2;
const APP = "tcoder-machines";

let cloud: LocalCloud;
let dir: string;
let receiver: Server;
let receiverUrl: string;
const callbacks: { body: string; signature: string | undefined }[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "tcoder-control-plane-"));
  receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      callbacks.push({
        body: Buffer.concat(chunks).toString("utf8"),
        signature: req.headers[SIGNATURE_HEADER] as string | undefined,
      });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", resolve));
  receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/tcoder`;
  cloud = await startLocalCloud({
    dir,
    maxMachines: MAX_MACHINES,
    vars: { JOB_MAX_ATTEMPTS: String(MAX_ATTEMPTS), LOG_LEVEL: "error" },
  });
}, 180_000);

afterAll(async () => {
  await cloud?.stop();
  await new Promise((resolve) => receiver?.close(resolve));
  if (dir) await rm(dir, { recursive: true, force: true });
});

const api = (path: string, init: RequestInit & { json?: unknown; token?: string | null } = {}) => {
  const { json, token, ...rest } = init;
  const headers = new Headers(rest.headers);
  if (token !== null) headers.set("authorization", `Bearer ${token ?? cloud.apiToken}`);
  if (json !== undefined) headers.set("content-type", "application/json");
  return fetch(`${cloud.apiUrl}${path}`, {
    ...rest,
    headers,
    ...(json !== undefined ? { body: JSON.stringify(json) } : {}),
  });
};

const readJob = async (id: string) => (await (await api(`/v1/jobs/${id}`)).json()) as Job;

/** Waits for a condition the system reaches asynchronously (queues, waitUntil); fails after 20 s. */
async function eventually<T>(probe: () => Promise<T>, accept: (value: T) => boolean, what: string): Promise<T> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const value = await probe();
    if (accept(value)) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(value)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const source = new Uint8Array(4096).fill(3);

async function uploadJob(extra: Record<string, unknown> = {}) {
  const res = await api("/v1/uploads", {
    method: "POST",
    json: { filename: "clip.mp4", contentType: "video/mp4", size: source.length, ...extra },
  });
  expect(res.status).toBe(201);
  const body = (await res.json()) as {
    jobId: string;
    upload: { url: string; headers: Record<string, string> };
    job: Job;
  };
  const put = await fetch(body.upload.url, { method: "PUT", headers: body.upload.headers, body: source });
  expect(put.status).toBe(200);
  return body;
}

const liveMachines = () => cloud.fly.machines(APP).filter((m) => m.state !== "destroyed");

async function sendEvent(
  event: unknown,
  { secret = cloud.env.MACHINE_EVENTS_SECRET, t = Math.floor(Date.now() / 1000) } = {},
) {
  const body = JSON.stringify(event);
  return fetch(`${cloud.apiUrl}/v1/machine-events`, {
    method: "POST",
    headers: { "content-type": "application/json", [SIGNATURE_HEADER]: await signPayload(secret, body, t) },
    body,
  });
}

/** A machine the worker created, so claims come from ids the pool knows (as FLY_MACHINE_ID would be). */
const poolMachineId = (n = 0) => {
  const machines = liveMachines();
  const machine = machines[n % machines.length];
  if (!machine) throw new Error("no machine in the pool");
  return machine.id;
};

/** Claims until `jobId` is the one claimed (older queued jobs are claimed along the way). */
async function claim(jobId: string, machineId: string, nowMs = Date.now()) {
  for (let i = 0; i < 50; i++) {
    const claimed = await claimNextJob(cloud.redis, { machineId, leaseSeconds: 60, nowMs });
    if (!claimed) break;
    if (claimed.jobId === jobId) return claimed;
  }
  throw new Error(`could not claim ${jobId}`);
}

describe("the API at the edge", () => {
  it("answers 401 problem JSON without or with a wrong bearer token", async () => {
    for (const token of [null, "x".repeat(32), `${cloud.apiToken.slice(0, -1)}_`]) {
      const res = await api("/v1/stats", { token });
      expect(res.status).toBe(401);
      expect(res.headers.get("content-type")).toBe("application/problem+json");
      expect(((await res.json()) as { code: string }).code).toBe("unauthorized");
    }
  });

  it("serves /healthz and the OpenAPI document without a token", async () => {
    expect(await (await api("/healthz", { token: null })).json()).toEqual({
      ok: true,
      service: "tcoder-control-plane",
    });
    const doc = (await (await api("/openapi.json", { token: null })).json()) as { paths: Record<string, unknown> };
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining(["/v1/uploads", "/v1/jobs/{id}", "/v1/machine-events"]),
    );
  });

  it("answers 400 problem JSON for bad bodies", async () => {
    const invalid = await api("/v1/uploads", { method: "POST", json: { filename: "a.mp4" } });
    expect(invalid.status).toBe(400);
    expect(invalid.headers.get("content-type")).toBe("application/problem+json");
    expect(((await invalid.json()) as { code: string }).code).toBe("invalid_request");
    const malformed = await api("/v1/jobs", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{",
    });
    expect(malformed.status).toBe(400);
    expect(((await malformed.json()) as { code: string }).code).toBe("malformed_json");
    const badEvent = await sendEvent({ type: "completed", jobId: "job_x" });
    expect(badEvent.status).toBe(400);
    expect(((await badEvent.json()) as { code: string }).code).toBe("invalid_request");
  });
});

describe("upload to queue to machine", () => {
  let jobId: string;
  let inputKey: string;

  it("presign → PUT → R2 event → pending and enqueued → a machine created in the Fly API", async () => {
    expect(liveMachines()).toHaveLength(0);
    const upload = await uploadJob();
    jobId = upload.jobId;
    inputKey = upload.job.input.key;
    expect(upload.job.state).toBe("awaiting_upload");
    const pending = await eventually(
      () => readJob(jobId),
      (j) => j.state === "pending",
      "the upload event",
    );
    expect(pending.queuedAt).toBeDefined();
    expect(await cloud.redis.zscore(keys.queue, jobId)).not.toBeNull();
    await eventually(
      async () => liveMachines().length,
      (n) => n >= 1,
      "a machine",
    );
    expect(liveMachines().length).toBeLessThanOrEqual(MAX_MACHINES);
  });

  it("20 duplicate or replayed upload events leave exactly one queued job", async () => {
    const event: R2EventNotification = {
      account: "local",
      action: "PutObject",
      bucket: cloud.settings.INPUT_BUCKET,
      object: { key: inputKey, size: source.length },
      eventTime: new Date().toISOString(),
    };
    const result = await cloud.worker.queue(
      queues.uploads.name,
      Array.from({ length: 20 }, () => ({ body: event })),
    );
    expect(result.outcome).toBe("ok");
    const queued = await cloud.redis.zrange<string[]>(keys.queue, 0, -1);
    expect(queued.filter((id) => id === jobId)).toHaveLength(1);
    expect((await readJob(jobId)).state).toBe("pending");

    // Replays after the job started must not queue it again either.
    const claimed = await claim(jobId, poolMachineId());
    await cloud.worker.queue(
      queues.uploads.name,
      Array.from({ length: 20 }, () => ({ body: event })),
    );
    expect(await cloud.redis.zscore(keys.queue, jobId)).toBeNull();
    expect(await readJob(jobId)).toMatchObject({ state: "running", attempts: claimed.attempt });
  });
});

describe("admission", () => {
  it("never runs more machines than MAX_MACHINES under concurrent enqueues", async () => {
    const keysToQueue = await Promise.all(Array.from({ length: 4 }, async () => (await uploadJob()).job.input.key));
    const created = await Promise.all(
      [...keysToQueue, ...keysToQueue].map((inputKey) => api("/v1/jobs", { method: "POST", json: { inputKey } })),
    );
    for (const res of created) expect(res.status).toBe(201);
    await Promise.all(Array.from({ length: 3 }, () => cloud.worker.scheduled()));
    await eventually(
      async () => liveMachines().length,
      (n) => n === MAX_MACHINES,
      "the pool to fill",
    );
    // Every machine ever created counts: none was destroyed, so this is the high-water mark.
    expect(cloud.fly.machines(APP).length).toBeLessThanOrEqual(MAX_MACHINES);
    const stats = (await (await api("/v1/stats")).json()) as { maxMachines: number; queued: number };
    expect(stats.maxMachines).toBe(MAX_MACHINES);
    expect(stats.queued).toBeGreaterThan(MAX_MACHINES);
  });
});

describe("signed machine events", () => {
  it("refuse forged and expired signatures with 401 and change nothing", async () => {
    const { jobId } = await uploadJob();
    await eventually(
      () => readJob(jobId),
      (j) => j.state === "pending",
      "the upload event",
    );
    const machineId = poolMachineId(1);
    const claimed = await claim(jobId, machineId);
    const before = await readJob(jobId);
    const event = {
      type: "failed",
      jobId,
      machineId,
      attempt: claimed.attempt,
      error: { code: "internal", message: "forged" },
    };
    const forged = await sendEvent(event, { secret: "a-secret-the-attacker-guessed" });
    const expired = await sendEvent(event, { t: Math.floor(Date.now() / 1000) - 3600 });
    for (const res of [forged, expired]) {
      expect(res.status).toBe(401);
      expect(((await res.json()) as { code: string }).code).toBe("invalid_signature");
    }
    expect(await readJob(jobId)).toEqual(before);

    const genuine = await sendEvent({
      type: "progress",
      jobId,
      machineId,
      attempt: claimed.attempt,
      progress: 0.25,
      stage: "transcoding",
    });
    expect(await genuine.json()).toEqual({ ok: true, action: "continue" });
    expect(await readJob(jobId)).toMatchObject({ state: "running", progress: 0.25 });
  });
});

describe("lease recovery", () => {
  it("requeues a job whose lease expired, fails it after max attempts, and calls back signed", async () => {
    const { jobId } = await uploadJob({ callbackUrl: receiverUrl });
    await eventually(
      () => readJob(jobId),
      (j) => j.state === "pending",
      "the upload event",
    );
    const longAgo = Date.now() - 10 * 60_000;

    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
      const claimed = await claim(jobId, poolMachineId(attempt), longAgo);
      expect(claimed.attempt).toBe(attempt);
      await cloud.worker.scheduled();
      const job = await readJob(jobId);
      if (attempt < MAX_ATTEMPTS) expect(job).toMatchObject({ state: "pending", attempts: attempt });
      else expect(job).toMatchObject({ state: "failed", attempts: MAX_ATTEMPTS, error: { code: "lease_expired" } });
    }

    const delivered = await eventually(
      async () => callbacks.filter((c) => c.body.includes(jobId)),
      (list) => list.length > 0,
      "the failure callback",
    );
    const [callback] = delivered;
    expect(
      await verifySignature(cloud.env.CALLBACK_SIGNING_SECRET, callback?.body ?? "", callback?.signature),
    ).toMatchObject({ ok: true });
    expect(JSON.parse(callback?.body ?? "{}")).toMatchObject({
      type: "job.failed",
      job: { id: jobId, state: "failed" },
    });
    await eventually(
      () => readJob(jobId),
      (j) => j.callback?.state === "delivered",
      "the delivery record",
    );
  });
});
