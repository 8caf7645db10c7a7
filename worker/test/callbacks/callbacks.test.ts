import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { queues } from "../../src/bindings.ts";
import {
  backoffSeconds,
  type CallbackQueueMessage,
  enqueueCallback,
  handleCallbackBatch,
} from "../../src/callbacks/index.ts";
import { SIGNATURE_HEADER, verifySignature } from "../../src/contract/index.ts";
import { newJobId } from "../../src/http/job-id.ts";
import { cancelJob, createJob, getJob } from "../../src/state/index.ts";
import { CALLBACK_SIGNING_SECRET, type ControlPlaneServices, startControlPlaneServices } from "../http/harness.ts";

interface Received {
  body: string;
  signature: string | undefined;
}

let cp: ControlPlaneServices;
let server: Server;
let receiverUrl: string;
let received: Received[] = [];
let answerStatus = 200;

const readBody = async (req: IncomingMessage) => {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
};

beforeAll(async () => {
  cp = await startControlPlaneServices();
  server = createServer(async (req, res) => {
    received.push({ body: await readBody(req), signature: req.headers[SIGNATURE_HEADER] as string | undefined });
    res.writeHead(answerStatus).end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  receiverUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
});
afterAll(async () => {
  await new Promise((resolve) => server?.close(resolve));
  await cp?.stop();
});
beforeEach(() => {
  received = [];
  answerStatus = 200;
});

/** A canceled job whose callback goes to the local receiver. */
async function canceledJob(callbackUrl = receiverUrl) {
  const now = Date.now();
  const id = newJobId(now);
  await createJob(
    cp.redis,
    { id, preset: "hls-ladder", input: { key: `inputs/${id}/a.mp4` }, callbackUrl, state: "pending", maxAttempts: 3 },
    now,
  );
  const result = await cancelJob(cp.redis, id, now);
  if (!result.ok) throw new Error("cancel failed");
  return result.job;
}

interface FakeMessage extends CallbackQueueMessage {
  acked: boolean;
  retried: { delaySeconds?: number } | null;
}

const message = (body: unknown, attempts: number): FakeMessage => ({
  body,
  attempts,
  acked: false,
  retried: null,
  ack() {
    this.acked = true;
  },
  retry(options) {
    this.retried = options ?? {};
  },
});

describe("enqueueCallback", () => {
  it("sends {jobId, state, attempt} for a job with a callback URL and nothing without one", async () => {
    const job = await canceledJob();
    const sent: unknown[] = [];
    const queue = { CALLBACKS_QUEUE: { send: async (body: unknown) => void sent.push(body) } };
    await enqueueCallback(queue, job);
    await enqueueCallback(queue, { ...job, callbackUrl: undefined });
    expect(sent).toEqual([{ jobId: job.id, state: "canceled", attempt: 0 }]);
  });
});

describe("handleCallbackBatch", () => {
  it("POSTs the public job signed with CALLBACK_SIGNING_SECRET and records delivery", async () => {
    const job = await canceledJob();
    const msg = message({ jobId: job.id, state: "canceled", attempt: 0 }, 1);
    await handleCallbackBatch({ messages: [msg] }, cp.env);

    expect(msg.acked).toBe(true);
    expect(received).toHaveLength(1);
    const [delivery] = received;
    const check = await verifySignature(CALLBACK_SIGNING_SECRET, delivery?.body ?? "", delivery?.signature);
    expect(check.ok).toBe(true);
    expect(await verifySignature("some-other-secret-value", delivery?.body ?? "", delivery?.signature)).toMatchObject({
      ok: false,
    });
    const payload = JSON.parse(delivery?.body ?? "{}");
    expect(payload).toMatchObject({ type: "job.canceled", job: { id: job.id, state: "canceled" } });
    expect((await getJob(cp.redis, job.id))?.callback).toEqual({ state: "delivered", attempts: 1 });
  });

  it("retries a failed delivery with growing delays and records the last error", async () => {
    answerStatus = 503;
    const job = await canceledJob();
    const delays: number[] = [];
    for (let attempts = 1; attempts < queues.callbacks.maxRetries; attempts++) {
      const msg = message({ jobId: job.id, state: "canceled", attempt: 0 }, attempts);
      await handleCallbackBatch({ messages: [msg] }, cp.env);
      expect(msg.acked).toBe(false);
      delays.push(msg.retried?.delaySeconds ?? 0);
    }
    for (let i = 1; i < delays.length; i++) expect(delays[i]).toBeGreaterThan(delays[i - 1] ?? 0);
    expect((await getJob(cp.redis, job.id))?.callback).toMatchObject({ state: "pending", lastError: "answered 503" });
  });

  it("gives up after the last attempt: acks and records the failure on the job", async () => {
    answerStatus = 500;
    const job = await canceledJob();
    const msg = message({ jobId: job.id, state: "canceled", attempt: 0 }, queues.callbacks.maxRetries);
    await handleCallbackBatch({ messages: [msg] }, cp.env);
    expect(msg.acked).toBe(true);
    expect(msg.retried).toBeNull();
    expect((await getJob(cp.redis, job.id))?.callback).toEqual({
      state: "failed",
      attempts: queues.callbacks.maxRetries,
      lastError: "answered 500",
    });
  });

  it("treats an unreachable receiver as a failed attempt", async () => {
    const job = await canceledJob("http://127.0.0.1:1/closed");
    const msg = message({ jobId: job.id, state: "canceled", attempt: 0 }, 1);
    await handleCallbackBatch({ messages: [msg] }, cp.env);
    expect(msg.retried?.delaySeconds).toBe(backoffSeconds(1));
    expect((await getJob(cp.redis, job.id))?.callback?.lastError).toMatch(/^network error/);
  });

  it("drops messages about an outcome the job has since left (retried) without calling", async () => {
    const job = await canceledJob();
    const msg = message({ jobId: job.id, state: "completed", attempt: 0 }, 1);
    const unknown = message({ jobId: "job_missing", state: "canceled", attempt: 0 }, 1);
    const garbage = message("not a message", 1);
    await handleCallbackBatch({ messages: [msg, unknown, garbage] }, cp.env);
    expect([msg.acked, unknown.acked, garbage.acked]).toEqual([true, true, true]);
    expect(received).toHaveLength(0);
  });
});

describe("backoffSeconds", () => {
  it("doubles from 10 s and is capped at an hour", () => {
    expect([1, 2, 3, 4].map(backoffSeconds)).toEqual([10, 20, 40, 80]);
    expect(backoffSeconds(30)).toBe(3600);
  });
});
