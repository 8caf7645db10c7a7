import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Job, type MachineEvent, SIGNATURE_HEADER, signPayload } from "../../src/contract/index.ts";
import { claimNextJob } from "../../src/state/index.ts";
import {
  type ControlPlaneServices,
  MACHINE_EVENTS_SECRET,
  OUTPUTS_BASE_URL,
  startControlPlaneServices,
} from "./harness.ts";

let cp: ControlPlaneServices;
beforeAll(async () => {
  cp = await startControlPlaneServices();
});
afterAll(() => cp?.stop());

const nowSeconds = () => Math.floor(Date.now() / 1000);
const source = new Uint8Array(1024).fill(1);

async function sendEvent(
  event: unknown,
  { secret = MACHINE_EVENTS_SECRET, t = nowSeconds(), raw }: { secret?: string; t?: number; raw?: string } = {},
) {
  const body = raw ?? JSON.stringify(event);
  return cp.request("/v1/machine-events", {
    method: "POST",
    token: null,
    headers: { "content-type": "application/json", [SIGNATURE_HEADER]: await signPayload(secret, body, t) },
    body,
  });
}

async function readJob(id: string): Promise<Job> {
  return (await (await cp.request(`/v1/jobs/${id}`)).json()) as Job;
}

/** A job that machine `m-test` has claimed: running, attempt 1. */
async function runningJob(callbackUrl?: string): Promise<{ jobId: string; attempt: number; machineId: string }> {
  const up = (await (
    await cp.request("/v1/uploads", {
      method: "POST",
      json: { filename: "a.mp4", contentType: "video/mp4", size: source.length },
    })
  ).json()) as { upload: { url: string; headers: Record<string, string> }; job: Job };
  await fetch(up.upload.url, { method: "PUT", headers: up.upload.headers, body: source });
  const created = (await (
    await cp.request("/v1/jobs", {
      method: "POST",
      json: { inputKey: up.job.input.key, ...(callbackUrl ? { callbackUrl } : {}) },
    })
  ).json()) as Job;
  const machineId = "m-test";
  for (;;) {
    const claim = await claimNextJob(cp.redis, { machineId, leaseSeconds: 60 });
    if (!claim) throw new Error("nothing to claim");
    if (claim.jobId === created.id) return { jobId: claim.jobId, attempt: claim.attempt, machineId };
  }
}

const completedEvent = (run: { jobId: string; attempt: number; machineId: string }): MachineEvent => ({
  type: "completed",
  ...run,
  outputs: {
    manifest: `outputs/${run.jobId}/manifest.json`,
    hlsMaster: `outputs/${run.jobId}/hls/master.m3u8`,
    renditions: [
      {
        name: "360p",
        width: 640,
        height: 360,
        bandwidth: 900000,
        playlist: `outputs/${run.jobId}/hls/360p/index.m3u8`,
      },
    ],
    mp4: `outputs/${run.jobId}/video.mp4`,
  },
  probe: { formatName: "mov,mp4", durationSeconds: 2, sizeBytes: 1024 },
});

describe("POST /v1/machine-events", () => {
  it("accepts a validly signed progress event without a bearer token", async () => {
    const run = await runningJob();
    const res = await sendEvent({ type: "progress", ...run, progress: 0.5, stage: "transcoding" });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ ok: true, action: "continue" });
    expect(await readJob(run.jobId)).toMatchObject({ state: "running", progress: 0.5, stage: "transcoding" });
  });

  it("refuses forged, stale, future and missing signatures with 401 invalid_signature and changes nothing", async () => {
    const run = await runningJob();
    const before = await readJob(run.jobId);
    const event = { type: "progress", ...run, progress: 0.9, stage: "uploading" };
    const forged = await sendEvent(event, { secret: "not-the-machine-events-secret" });
    const stale = await sendEvent(event, { t: nowSeconds() - 301 });
    const future = await sendEvent(event, { t: nowSeconds() + 301 });
    const missing = await cp.request("/v1/machine-events", {
      method: "POST",
      token: null,
      json: event,
    });
    for (const res of [forged, stale, future, missing]) {
      expect(res.status).toBe(401);
      expect(res.headers.get("content-type")).toBe("application/problem+json");
      expect(((await res.json()) as { code: string }).code).toBe("invalid_signature");
    }
    expect(await readJob(run.jobId)).toEqual(before);
  });

  it("refuses a signature over a different body", async () => {
    const run = await runningJob();
    const signed = JSON.stringify({ type: "heartbeat", ...run });
    const res = await cp.request("/v1/machine-events", {
      method: "POST",
      token: null,
      headers: {
        "content-type": "application/json",
        [SIGNATURE_HEADER]: await signPayload(MACHINE_EVENTS_SECRET, signed),
      },
      body: JSON.stringify({ type: "failed", ...run, error: { code: "internal", message: "x" } }),
    });
    expect(res.status).toBe(401);
    expect((await readJob(run.jobId)).state).toBe("running");
  });

  it("answers 400 for signed bodies that are not events", async () => {
    const bad = await sendEvent({ type: "exploded", jobId: "x", machineId: "m", attempt: 1 });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { code: string }).code).toBe("invalid_request");
    const malformed = await sendEvent(undefined, { raw: '{"type":' });
    expect(malformed.status).toBe(400);
    expect(((await malformed.json()) as { code: string }).code).toBe("malformed_json");
  });

  it("completes a job with public output URLs; a replayed completed event changes nothing", async () => {
    const run = await runningJob("https://hooks.example.com/done");
    const before = cp.callbacks.length;
    const first = await sendEvent(completedEvent(run));
    expect(first.status).toBe(200);
    const done = await readJob(run.jobId);
    expect(done).toMatchObject({ state: "completed", progress: 1 });
    expect(done.outputs?.hlsMaster).toEqual({
      key: `outputs/${run.jobId}/hls/master.m3u8`,
      url: `${OUTPUTS_BASE_URL}/outputs/${run.jobId}/hls/master.m3u8`,
    });
    expect(done.outputs?.renditions[0]?.playlist.url).toBe(
      `${OUTPUTS_BASE_URL}/outputs/${run.jobId}/hls/360p/index.m3u8`,
    );

    for (let i = 0; i < 3; i++) {
      const replay = await sendEvent(completedEvent(run));
      expect(replay.status).toBe(200);
    }
    expect(await readJob(run.jobId)).toEqual(done);
    expect(cp.callbacks.slice(before)).toEqual([
      { body: { jobId: run.jobId, state: "completed", attempt: run.attempt } },
    ]);
  });

  it("tells a machine whose job was canceled to abort", async () => {
    const run = await runningJob();
    await cp.request(`/v1/jobs/${run.jobId}/cancel`, { method: "POST" });
    const res = await sendEvent({ type: "heartbeat", ...run });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ ok: true, action: "abort" });
  });

  it("is not reachable with only the API bearer token", async () => {
    const run = await runningJob();
    const res = await cp.request("/v1/machine-events", { method: "POST", json: { type: "heartbeat", ...run } });
    expect(res.status).toBe(401);
  });
});
