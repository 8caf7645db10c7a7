/**
 * At-least-once delivery everywhere: R2 events arrive twice, out of order and late; a machine's
 * signed events are replayed after the job ended; the client's callback endpoint is down. None
 * of it runs a job twice or moves a finished job, and a callback that cannot be delivered is
 * retried with growing delays, then given up on and recorded on the job.
 */
import { readFile } from "node:fs/promises";
import { PutObjectCommand } from "@aws-sdk/client-s3";
import { queues } from "@tcoder/worker/bindings";
import {
  type Job,
  MACHINE_EVENTS_PATH,
  type MachineEvent,
  type R2EventNotification,
  SIGNATURE_HEADER,
  signPayload,
} from "@tcoder/worker/contract";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type CallbackReceiver,
  type FaultStack,
  makeTinyClip,
  startCallbackReceiver,
  startFaultStack,
  submitClip,
  waitFor,
  waitForTerminal,
} from "./harness.ts";

describe("duplicate, reordered and late events", () => {
  let fault: FaultStack;
  let hooks: CallbackReceiver;
  let clip: string;

  beforeAll(async () => {
    hooks = await startCallbackReceiver();
    fault = await startFaultStack("events", { maxMachines: 2, vars: { UPLOAD_EXPIRY_SECONDS: "3" } });
    clip = await makeTinyClip(fault.dir);
  });
  afterAll(async () => {
    await fault?.stop();
    await hooks?.close();
  });

  const uploadEvent = (job: Job, action: R2EventNotification["action"] = "PutObject"): R2EventNotification => ({
    account: "local",
    action,
    bucket: fault.stack.cloud.settings.INPUT_BUCKET,
    object: { key: job.input.key, size: job.input.sizeBytes ?? 0 },
    eventTime: new Date().toISOString(),
  });
  const deliverUploadEvent = (event: R2EventNotification) =>
    fault.stack.cloud.worker.sendToQueue(queues.uploads.name, event);
  const claimsOf = (jobId: string) => fault.machineLines.filter((l) => l.jobId === jobId && l.message === "claimed");
  /** Waits until the uploads consumer has handled `count` events of the job (it logs each before acknowledging it). */
  const handledUploadEvents = (jobId: string, count: number) =>
    waitFor(`${count} upload events of ${jobId} handled`, () => {
      const handled = fault.workerEvents({ source: "queue", event: "upload_event", jobId });
      return handled.length >= count ? handled : undefined;
    });

  async function postMachineEvent(event: MachineEvent) {
    const { cloud } = fault.stack;
    const body = JSON.stringify(event);
    const response = await fetch(new URL(MACHINE_EVENTS_PATH, cloud.apiUrl), {
      method: "POST",
      headers: {
        "content-type": "application/json",
        [SIGNATURE_HEADER]: await signPayload(cloud.settings.MACHINE_EVENTS_SECRET, body),
      },
      body,
    });
    return { status: response.status, body: (await response.json()) as { action?: string } };
  }

  it("runs each job once when its upload event comes several times and in another job's order", async () => {
    const ids = [
      await submitClip(fault, clip, { callbackUrl: hooks.url }),
      await submitClip(fault, clip, { callbackUrl: hooks.url }),
    ];
    const [first, second] = (await Promise.all(ids.map((id) => fault.api.getJob(id)))) as [Job, Job];
    // Besides the store's own event per upload: the second job's first, each twice, one as a copy.
    for (const event of [
      uploadEvent(second),
      uploadEvent(first),
      uploadEvent(second, "CopyObject"),
      uploadEvent(first),
    ])
      await deliverUploadEvent(event);

    const jobs = await waitForTerminal(fault.api, ids);
    expect(jobs.map((j) => [j.state, j.attempts])).toEqual([
      ["completed", 1],
      ["completed", 1],
    ]);

    // The same events, late: after the jobs completed. Each job has the store's event, two of the
    // above and one late one: all four handled, and then it is as it was.
    await deliverUploadEvent(uploadEvent(first));
    await deliverUploadEvent(uploadEvent(second, "CompleteMultipartUpload"));
    for (const id of ids) {
      const handled = await handledUploadEvents(id, 4);
      expect(handled.map((line) => line.result).sort()).toEqual(["duplicate", "duplicate", "duplicate", "queued"]);
      const job = await fault.api.getJob(id);
      expect([job.state, job.attempts]).toEqual(["completed", 1]);
      expect(claimsOf(id)).toHaveLength(1);
      expect(fault.completionsOf(id)).toHaveLength(1);
      await waitFor("the completed callback", () => hooks.completedCount(id) > 0);
      expect(hooks.completedCount(id)).toBe(1);
    }
  }, 120_000);

  it("ignores an upload that lands after its job expired", async () => {
    const { cloud } = fault.stack;
    const { jobId, job } = await fault.api.createUpload({ filename: "late.mp4", contentType: "video/mp4", size: 1000 });
    await waitFor("the upload to expire", async () => (await fault.api.getJob(jobId)).state === "expired", {
      timeoutMs: 30_000,
    });
    // The object arrives anyway (the store emits its event) and the event is delivered again.
    await cloud.s3.send(
      new PutObjectCommand({ Bucket: cloud.settings.INPUT_BUCKET, Key: job.input.key, Body: await readFile(clip) }),
    );
    await deliverUploadEvent(uploadEvent(job));
    // The store's event and the one delivered again: both handled, neither revived the job.
    await handledUploadEvents(jobId, 2);
    expect((await fault.api.getJob(jobId)).state).toBe("expired");
    expect(claimsOf(jobId)).toHaveLength(0);
  }, 60_000);

  it("keeps a completed job as it is when its machine events are replayed", async () => {
    const id = await submitClip(fault, clip);
    const [done] = (await waitForTerminal(fault.api, [id])) as [Job];
    expect(done.state).toBe("completed");
    const base = { jobId: id, machineId: done.machineId as string, attempt: done.attempts };
    const outputs = { manifest: `outputs/${id}/9/manifest.json`, renditions: [] };
    const probe = done.probe as NonNullable<Job["probe"]>;

    const replays: MachineEvent[] = [
      { type: "claimed", ...base },
      { type: "progress", ...base, stage: "transcoding", progress: 0.5 },
      { type: "completed", ...base, outputs, probe },
      { type: "failed", ...base, error: { code: "internal", message: "replayed" }, retryable: true },
      { type: "released", ...base, reason: "replayed" },
      { type: "heartbeat", ...base, machineId: "some-other-machine" },
    ];
    for (const event of replays) {
      const answer = await postMachineEvent(event);
      expect(answer.status).toBe(200);
      // Work on a finished job is never to be continued.
      if (event.type === "progress" || event.type === "heartbeat" || event.type === "claimed")
        expect(answer.body.action).toBe("abort");
    }
    const after = await fault.api.getJob(id);
    expect(after.state).toBe("completed");
    expect(after.attempts).toBe(done.attempts);
    expect(after.outputs).toEqual(done.outputs);
    expect(after.error).toBeUndefined();
    expect(after.finishedAt).toBe(done.finishedAt);
  }, 60_000);

  it("retries a callback to an endpoint that is down with backoff, then gives up and records it", async () => {
    const down = await startCallbackReceiver();
    await down.close();
    const id = await submitClip(fault, clip, { callbackUrl: down.url });
    const [done] = (await waitForTerminal(fault.api, [id])) as [Job];
    expect(done.state).toBe("completed");

    // The first delivery through the real queue fails and is recorded as pending, with the reason.
    const firstTry = await waitFor("the first failed delivery", async () => {
      const job = await fault.api.getJob(id);
      return job.callback && job.callback.attempts >= 1 ? job.callback : undefined;
    });
    expect(firstTry.lastError).toMatch(/network error|refused|answered/i);

    // The queue's redeliveries, played one after another without waiting out the delays.
    const { worker } = fault.stack.cloud;
    const message = { jobId: id, state: "completed", attempt: done.attempts };
    const delays: number[] = [];
    for (let attempts = 1; attempts < queues.callbacks.maxRetries; attempts++) {
      const result = await worker.queue(queues.callbacks.name, [{ body: message, attempts }]);
      expect(result.explicitAcks).toEqual([]);
      delays.push(result.retryMessages[0]?.delaySeconds ?? 0);
    }
    expect(delays).toEqual(delays.map((_, i) => Math.min(3600, 10 * 2 ** i)));
    const last = await worker.queue(queues.callbacks.name, [{ body: message, attempts: queues.callbacks.maxRetries }]);
    expect(last.retryMessages).toEqual([]);
    expect(last.explicitAcks).toHaveLength(1);
    const job = await fault.api.getJob(id);
    expect(job.callback).toMatchObject({ state: "failed", attempts: queues.callbacks.maxRetries });
    expect(job.callback?.lastError).toMatch(/network error|refused|answered/i);
    expect(job.state).toBe("completed");
  }, 60_000);
});
