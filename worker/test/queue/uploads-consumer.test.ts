/**
 * The uploads queue consumer against real Redis (Upstash REST bridge) and the local Fly API.
 * Messages are plain objects with the workers `Message` surface the consumer uses.
 */
import { Redis } from "@upstash/redis";
import { expect, test } from "vitest";
import type { R2EventNotification } from "../../src/contract/index.ts";
import { handleUploadEvents, type UploadMessage } from "../../src/queue/uploads-consumer.ts";
import { createJob, getJob, getStats, inputKeyFor, readPool } from "../../src/state/index.ts";
import { useStateServices } from "../state/services.ts";

const s = useStateServices({ MAX_MACHINES: "2" });

const T0 = Date.UTC(2026, 10, 29, 12, 0, 0);

interface RecordedMessage extends UploadMessage {
  outcome: "pending" | "ack" | "retry";
  delaySeconds?: number;
}

let nextId = 0;
function message(body: unknown, attempts = 1): RecordedMessage {
  const m: RecordedMessage = {
    id: `msg-${nextId++}`,
    body,
    attempts,
    outcome: "pending",
    ack() {
      m.outcome = "ack";
    },
    retry(options) {
      m.outcome = "retry";
      if (options?.delaySeconds !== undefined) m.delaySeconds = options.delaySeconds;
    },
  };
  return m;
}

const uploaded = (key: string, overrides: Partial<R2EventNotification> = {}): R2EventNotification => ({
  account: "acc",
  action: "PutObject",
  bucket: "tcoder-inputs",
  object: { key, size: 2048, eTag: "abc" },
  eventTime: new Date(T0).toISOString(),
  ...overrides,
});

const awaitingUpload = (id: string) =>
  createJob(
    s.redis,
    {
      id,
      preset: "hls-ladder",
      input: { key: inputKeyFor(id, "clip.mp4") },
      state: "awaiting_upload",
      uploadExpiresAt: T0 + 3600_000,
      maxAttempts: 3,
    },
    T0,
  );

const consume = (messages: RecordedMessage[], redis: Redis = s.redis) =>
  handleUploadEvents({ queue: "tcoder-uploads", messages }, s.env, { redis, fly: s.flyClient, nowMs: () => T0 + 5000 });

test("20 duplicate upload events, in one batch and replayed later, queue the job once and admit one machine", async () => {
  await awaitingUpload("j1");
  const batch = Array.from({ length: 20 }, () => message(uploaded(inputKeyFor("j1", "clip.mp4"))));
  await consume(batch.slice(0, 10));
  await consume(batch.slice(10));
  expect(batch.every((m) => m.outcome === "ack")).toBe(true);
  expect(await getJob(s.redis, "j1")).toMatchObject({ state: "pending", input: { sizeBytes: 2048 } });
  expect((await getStats(s.redis, T0 + 5000)).queued).toBe(1);
  expect(await readPool(s.redis)).toHaveLength(1);
});

test("every create action counts; deletes, other buckets and keys outside inputs/<jobId>/ are acknowledged and ignored", async () => {
  await awaitingUpload("a");
  await awaitingUpload("b");
  const messages = [
    message(uploaded(inputKeyFor("a", "clip.mp4"), { action: "CompleteMultipartUpload" })),
    message(uploaded(inputKeyFor("b", "clip.mp4"), { action: "DeleteObject" })),
    message(uploaded(inputKeyFor("b", "clip.mp4"), { bucket: "someone-elses" })),
    message(uploaded("uploads/b/clip.mp4")),
    message(uploaded(inputKeyFor("unknown-job", "clip.mp4"))),
  ];
  await consume(messages);
  expect(messages.map((m) => m.outcome)).toEqual(["ack", "ack", "ack", "ack", "ack"]);
  expect((await getJob(s.redis, "a"))?.state).toBe("pending");
  expect((await getJob(s.redis, "b"))?.state).toBe("awaiting_upload");
  expect(await getJob(s.redis, "unknown-job")).toBeNull();
});

test("a body that is not an R2 event is retried (so the queue dead-letters it) without blocking the others", async () => {
  await awaitingUpload("j1");
  const poison = message({ hello: "world" }, 3);
  const good = message(uploaded(inputKeyFor("j1", "clip.mp4")));
  await consume([poison, good]);
  expect(poison.outcome).toBe("retry");
  expect(good.outcome).toBe("ack");
  expect((await getJob(s.redis, "j1"))?.state).toBe("pending");
});

test("when Redis is unreachable each message is retried with a delay", async () => {
  const down = new Redis({ url: "http://127.0.0.1:9", token: "x", retry: false });
  const first = message(uploaded(inputKeyFor("j1", "clip.mp4")), 1);
  const third = message(uploaded(inputKeyFor("j2", "clip.mp4")), 3);
  await consume([first, third], down);
  expect([first.outcome, third.outcome]).toEqual(["retry", "retry"]);
  expect(first.delaySeconds).toBeGreaterThan(0);
  expect(third.delaySeconds).toBeGreaterThan(first.delaySeconds ?? 0);
});
