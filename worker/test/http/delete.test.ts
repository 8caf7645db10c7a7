/**
 * `DELETE /v1/jobs/{id}` against real Redis and the SigV4-verifying S3 store: the tombstone, the
 * objects under every prefix of the job (thousands, in DeleteObjects batches), a running job's
 * machine told to abort, later events changing nothing, and a store that fails halfway with the
 * cron finishing the work.
 */
import { createServer, request as httpRequest, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Job, MachineEvent, R2EventNotification } from "../../src/contract/index.ts";
import { SIGNATURE_HEADER, signPayload } from "../../src/contract/index.ts";
import { runScheduled } from "../../src/cron/index.ts";
import { handleUploadEvents } from "../../src/queue/uploads-consumer.ts";
import { claimNextJob } from "../../src/state/index.ts";
import { listKeyPage } from "../../src/storage/objects.ts";
import { presignPut } from "../../src/storage/s3.ts";
import { type ControlPlaneServices, MACHINE_EVENTS_SECRET, startControlPlaneServices } from "./harness.ts";

let cp: ControlPlaneServices;
beforeAll(async () => {
  cp = await startControlPlaneServices({ MAX_MACHINES: "1" });
});
afterAll(() => cp?.stop());

const source = new Uint8Array(1024).fill(3);

/** PUTs small objects through presigned URLs, `concurrency` at a time. */
async function putObjects(bucket: string, keys: string[], env = cp.env, concurrency = 16): Promise<void> {
  const queue = [...keys];
  const worker = async () => {
    for (let key = queue.shift(); key !== undefined; key = queue.shift()) {
      const put = await presignPut(env, {
        bucket,
        key,
        contentType: "video/iso.segment",
        sizeBytes: 3,
        expiresInSeconds: 600,
        nowMs: Date.now(),
      });
      const res = await fetch(put.url, { method: "PUT", headers: put.headers, body: "seg" });
      if (res.status !== 200) throw new Error(`PUT ${key}: ${res.status}`);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}

const keysUnder = async (bucket: string, prefix: string) => (await listKeyPage(cp.env, bucket, prefix)).keys;
const everyObjectOf = async (jobId: string) => [
  ...(await keysUnder(cp.env.INPUT_BUCKET, `inputs/${jobId}/`)),
  ...(await keysUnder(cp.env.OUTPUT_BUCKET, `outputs/${jobId}/`)),
];
const readJob = async (id: string) => (await (await cp.request(`/v1/jobs/${id}`)).json()) as Job;
const deleteRequest = (id: string, env = cp.env) =>
  cp.request(`/v1/jobs/${id}`, { method: "DELETE", ...(env === cp.env ? {} : { env }) });

async function sendEvent(event: MachineEvent) {
  const body = JSON.stringify(event);
  const res = await cp.request("/v1/machine-events", {
    method: "POST",
    token: null,
    headers: { "content-type": "application/json", [SIGNATURE_HEADER]: await signPayload(MACHINE_EVENTS_SECRET, body) },
    body,
  });
  return (await res.json()) as { action: string };
}

/** A job with its source uploaded, claimed by machine `m-del` (running, attempt 1). */
async function runningJob(leaseSeconds = 60) {
  const up = (await (
    await cp.request("/v1/uploads", {
      method: "POST",
      json: {
        filename: "a.mp4",
        contentType: "video/mp4",
        size: source.length,
        callbackUrl: "https://hooks.example.com/tcoder",
      },
    })
  ).json()) as { upload: { url: string; headers: Record<string, string> }; job: Job };
  await fetch(up.upload.url, { method: "PUT", headers: up.upload.headers, body: source });
  const created = (await (
    await cp.request("/v1/jobs", {
      method: "POST",
      json: { inputKey: up.job.input.key, callbackUrl: "https://hooks.example.com/tcoder" },
    })
  ).json()) as Job;
  for (;;) {
    const claim = await claimNextJob(cp.redis, { machineId: "m-del", leaseSeconds });
    if (!claim) throw new Error("nothing to claim");
    if (claim.jobId === created.id) return { jobId: claim.jobId, attempt: claim.attempt, machineId: "m-del" };
  }
}

const segmentKeys = (jobId: string, attempt: number, count: number) =>
  Array.from({ length: count }, (_, i) => `outputs/${jobId}/${attempt}/hls/360p/seg_${String(i).padStart(5, "0")}.m4s`);

const completed = (run: { jobId: string; attempt: number; machineId: string }): MachineEvent => ({
  type: "completed",
  ...run,
  outputs: {
    manifest: `outputs/${run.jobId}/manifest.json`,
    hlsMaster: `outputs/${run.jobId}/${run.attempt}/hls/master.m3u8`,
    renditions: [],
    mp4: `outputs/${run.jobId}/${run.attempt}/video.mp4`,
  },
  probe: { formatName: "mov,mp4", durationSeconds: 2, sizeBytes: 1024 },
});

describe("DELETE /v1/jobs/{id}", () => {
  it("deletes a completed job with 1,500 objects: a tombstone without outputs, no object left, a job.deleted callback", async () => {
    const run = await runningJob();
    // Two attempts' worth of objects: the purge removes every attempt's prefix, not only the published one.
    await putObjects(cp.env.OUTPUT_BUCKET, [
      ...segmentKeys(run.jobId, 1, 1400),
      ...segmentKeys(run.jobId, 2, 99),
      `outputs/${run.jobId}/manifest.json`,
    ]);
    expect((await sendEvent(completed(run))).action).toBe("continue");
    expect((await readJob(run.jobId)).outputs).toBeDefined();
    cp.callbacks.length = 0;

    const res = await deleteRequest(run.jobId);
    expect(res.status).toBe(204);
    expect(await res.text()).toBe("");

    const job = await readJob(run.jobId);
    expect(job).toMatchObject({ id: run.jobId, state: "deleted", callbackUrl: "https://hooks.example.com/tcoder" });
    expect(job.outputs).toBeUndefined();
    expect(job.deletedAt).toBeDefined();
    expect(job.purgedAt).toBeDefined();
    expect(await everyObjectOf(run.jobId)).toEqual([]);
    expect(cp.callbacks.map((m) => m.body)).toEqual([{ jobId: run.jobId, state: "deleted", attempt: 1 }]);
  }, 120_000);

  it("answers 204 to a second delete and sends no second callback; unknown ids stay 404", async () => {
    const run = await runningJob();
    expect((await deleteRequest(run.jobId)).status).toBe(204);
    cp.callbacks.length = 0;
    expect((await deleteRequest(run.jobId)).status).toBe(204);
    expect(cp.callbacks).toEqual([]);
    for (const id of ["job_00000000000000000000000000", "x".repeat(300)]) {
      const missing = await deleteRequest(id);
      expect(missing.status).toBe(404);
      expect(((await missing.json()) as { code: string }).code).toBe("job_not_found");
    }
  });

  it("leaves deleted jobs out of the job list (but not out of ?state=deleted) and refuses cancel and retry", async () => {
    const run = await runningJob();
    await deleteRequest(run.jobId);
    const all = (await (await cp.request("/v1/jobs?limit=100")).json()) as { jobs: Job[] };
    expect(all.jobs.map((j) => j.id)).not.toContain(run.jobId);
    const deleted = (await (await cp.request("/v1/jobs?state=deleted&limit=100")).json()) as { jobs: Job[] };
    expect(deleted.jobs.map((j) => j.id)).toContain(run.jobId);
    for (const action of ["cancel", "retry"]) {
      const res = await cp.request(`/v1/jobs/${run.jobId}/${action}`, { method: "POST" });
      expect(res.status).toBe(409);
    }
  });

  it("tells a running job's machine to abort, ignores its later events, and purges again once its lease ran out", async () => {
    const run = await runningJob(2);
    await putObjects(cp.env.OUTPUT_BUCKET, segmentKeys(run.jobId, 1, 5));
    expect((await deleteRequest(run.jobId)).status).toBe(204);
    const tombstone = await readJob(run.jobId);
    expect(tombstone.state).toBe("deleted");
    // Its machine may still write until its lease is over: the job is not settled yet.
    expect(tombstone.purgedAt).toBeUndefined();

    expect((await sendEvent({ type: "heartbeat", ...run })).action).toBe("abort");
    // A segment the machine's upload in flight still wrote, then its `completed`: nothing changes.
    await putObjects(cp.env.OUTPUT_BUCKET, segmentKeys(run.jobId, 1, 1));
    expect((await sendEvent(completed(run))).action).toBe("abort");
    const after = await readJob(run.jobId);
    expect(after).toMatchObject({ state: "deleted", deletedAt: tombstone.deletedAt });
    expect(after.outputs).toBeUndefined();

    const leaseOver = Date.parse(tombstone.updatedAt) + 2_000;
    await expect.poll(() => Date.now() >= leaseOver, { timeout: 10_000 }).toBe(true);
    const report = await runScheduled(cp.env, Date.now());
    expect(report.purged).toContain(run.jobId);
    expect(await everyObjectOf(run.jobId)).toEqual([]);
    expect((await readJob(run.jobId)).purgedAt).toBeDefined();
  });

  it("removes an object uploaded to a deleted job's presigned URL once its upload event arrives", async () => {
    const up = (await (
      await cp.request("/v1/uploads", {
        method: "POST",
        json: { filename: "late.mp4", contentType: "video/mp4", size: source.length },
      })
    ).json()) as { jobId: string; upload: { url: string; headers: Record<string, string> }; job: Job };
    expect((await deleteRequest(up.jobId)).status).toBe(204);
    expect((await readJob(up.jobId)).purgedAt).toBeDefined();

    expect((await fetch(up.upload.url, { method: "PUT", headers: up.upload.headers, body: source })).status).toBe(200);
    const event: R2EventNotification = {
      account: "local",
      action: "PutObject",
      bucket: cp.env.INPUT_BUCKET,
      object: { key: up.job.input.key, size: source.length, eTag: "e" },
      eventTime: new Date().toISOString(),
    };
    const acks: string[] = [];
    await handleUploadEvents(
      {
        queue: "tcoder-uploads",
        messages: [
          { id: "m1", body: event, attempts: 1, ack: () => acks.push("ack"), retry: () => acks.push("retry") },
        ],
      },
      cp.env,
    );
    expect(acks).toEqual(["ack"]);
    const job = await readJob(up.jobId);
    expect(job.state).toBe("deleted");
    expect(job.purgedAt).toBeUndefined();

    const report = await runScheduled(cp.env, Date.now());
    expect(report.purged).toContain(up.jobId);
    expect(await everyObjectOf(up.jobId)).toEqual([]);
  });

  describe("when the store fails halfway", () => {
    let proxy: Server;
    let deleteCalls = 0;
    let proxyEndpoint: string;

    beforeAll(async () => {
      // Forwards to the real store (Host kept, so SigV4 still verifies) but refuses every DeleteObjects
      // call after the first with a 500 (retries included), as a store failing partway through would.
      const store = new URL(cp.env.S3_ENDPOINT);
      proxy = createServer((req, res) => {
        if (req.method === "POST" && (req.url ?? "").includes("?delete") && ++deleteCalls >= 2) {
          req.resume();
          res.writeHead(500, { "content-type": "application/xml" });
          res.end("<Error><Code>InternalError</Code><Message>injected</Message></Error>");
          return;
        }
        const upstream = httpRequest(
          { host: store.hostname, port: store.port, method: req.method, path: req.url, headers: req.headers },
          (answer) => {
            res.writeHead(answer.statusCode ?? 502, answer.headers);
            answer.pipe(res);
          },
        );
        req.pipe(upstream);
      });
      await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
      proxyEndpoint = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
    });
    afterAll(
      () =>
        new Promise<void>((resolve) => {
          proxy.closeAllConnections();
          proxy.close(() => resolve());
        }),
    );

    it("keeps the tombstone, leaves the job queued for the cron, and the cron removes the rest", async () => {
      const run = await runningJob();
      await putObjects(cp.env.OUTPUT_BUCKET, segmentKeys(run.jobId, 1, 2100));
      await sendEvent(completed(run));

      const res = await deleteRequest(run.jobId, { ...cp.env, S3_ENDPOINT: proxyEndpoint });
      expect(res.status).toBe(204);
      expect(deleteCalls).toBeGreaterThanOrEqual(2);
      const tombstone = await readJob(run.jobId);
      expect(tombstone.state).toBe("deleted");
      expect(tombstone.outputs).toBeUndefined();
      expect(tombstone.purgedAt).toBeUndefined();
      // The first batch went; the rest is still there.
      const left = await everyObjectOf(run.jobId);
      expect(left.length).toBeGreaterThan(0);
      expect(left.length).toBeLessThan(2101);

      const report = await runScheduled(cp.env, Date.now());
      expect(report.purged).toContain(run.jobId);
      expect(await everyObjectOf(run.jobId)).toEqual([]);
      expect((await readJob(run.jobId)).purgedAt).toBeDefined();
    }, 120_000);
  });
});
