/**
 * Job records and every transition, against real Redis through the Upstash REST bridge.
 */
import { Redis } from "@upstash/redis";
import { describe, expect, test } from "vitest";
import type { MachineEvent, OutputKeys, ProbeSummary } from "../../src/contract/index.ts";
import {
  applyMachineEvent,
  cancelJob,
  claimNextJob,
  createJob,
  expireStaleUploads,
  getJob,
  getStats,
  inputKeyFor,
  jobIdFromInputKey,
  listJobs,
  markUploaded,
  type NewJob,
  registerCreatedMachine,
  retryJob,
  StateError,
} from "../../src/state/index.ts";
import { useStateServices } from "./services.ts";

const s = useStateServices();

const T0 = Date.UTC(2026, 10, 29, 12, 0, 0);

const newJob = (id: string, overrides: Partial<NewJob> = {}): NewJob => ({
  id,
  preset: "hls-ladder",
  input: { key: inputKeyFor(id, "clip.mp4"), filename: "clip.mp4", contentType: "video/mp4" },
  state: "pending",
  maxAttempts: 3,
  ...overrides,
});

const probe: ProbeSummary = { formatName: "mov,mp4", durationSeconds: 2, sizeBytes: 1000 };
const outputs: OutputKeys = { manifest: "outputs/j/1/manifest.json", renditions: [] };

async function runningJob(id: string, machineId = "m1") {
  await createJob(s.redis, newJob(id), T0);
  const claim = await claimNextJob(s.redis, { machineId, leaseSeconds: 60, nowMs: T0 + 1000 });
  expect(claim?.jobId).toBe(id);
  return claim as NonNullable<typeof claim>;
}

const event = (e: MachineEvent) => e;

describe("records", () => {
  test("a created job reads back with the fields it was created with", async () => {
    await createJob(
      s.redis,
      newJob("j1", {
        state: "awaiting_upload",
        uploadExpiresAt: T0 + 3600_000,
        callbackUrl: "https://client.example/hook",
        metadata: { a: "1", b: "null" },
        input: { key: inputKeyFor("j1", "123"), filename: "123", contentType: "video/mp4", sizeBytes: 42 },
      }),
      T0,
    );
    const job = await getJob(s.redis, "j1");
    expect(job).toEqual({
      id: "j1",
      state: "awaiting_upload",
      playable: false,
      preset: "hls-ladder",
      playback: "public",
      progress: 0,
      attempts: 0,
      maxAttempts: 3,
      input: { key: "inputs/j1/123", filename: "123", contentType: "video/mp4", sizeBytes: 42 },
      callbackUrl: "https://client.example/hook",
      metadata: { a: "1", b: "null" },
      createdAt: new Date(T0).toISOString(),
      updatedAt: new Date(T0).toISOString(),
      uploadExpiresAt: new Date(T0 + 3600_000).toISOString(),
    });
  });

  test("creating an existing id is a conflict, and a missing job reads as null", async () => {
    await createJob(s.redis, newJob("j1"), T0);
    await expect(createJob(s.redis, newJob("j1"), T0)).rejects.toBeInstanceOf(StateError);
    expect(await getJob(s.redis, "nope")).toBeNull();
  });

  test("input keys round-trip to their job id; other keys name no job", () => {
    expect(jobIdFromInputKey(inputKeyFor("job_abc", "movie.mov"))).toBe("job_abc");
    expect(jobIdFromInputKey("outputs/job_abc/x")).toBeNull();
    expect(jobIdFromInputKey("inputs/job_abc")).toBeNull();
    expect(jobIdFromInputKey("inputs//x")).toBeNull();
  });

  test("listing is newest first, pages by cursor without gaps or repeats, and filters by state", async () => {
    // Two jobs share each millisecond, so the cursor must order ties too.
    for (let i = 0; i < 25; i++)
      await createJob(s.redis, newJob(`j${String(i).padStart(2, "0")}`), T0 + Math.floor(i / 2));
    const seen: string[] = [];
    let cursor: string | undefined;
    for (let page = 0; page < 10; page++) {
      const res = await listJobs(s.redis, { limit: 7, ...(cursor ? { cursor } : {}) });
      seen.push(...res.jobs.map((j) => j.id));
      if (!res.nextCursor) break;
      cursor = res.nextCursor;
    }
    expect(seen).toHaveLength(25);
    expect(new Set(seen).size).toBe(25);
    const created = await Promise.all(seen.map(async (id) => Date.parse((await getJob(s.redis, id))?.createdAt ?? "")));
    expect([...created].sort((a, b) => b - a)).toEqual(created);

    await cancelJob(s.redis, "j03", T0 + 100);
    const canceled = await listJobs(s.redis, { state: "canceled", limit: 10 });
    expect(canceled.jobs.map((j) => j.id)).toEqual(["j03"]);
    expect(canceled.nextCursor).toBeNull();
    await expect(listJobs(s.redis, { limit: 5, cursor: "garbage" })).rejects.toBeInstanceOf(StateError);
  });
});

describe("uploads", () => {
  test("20 duplicate or replayed upload events queue the job exactly once", async () => {
    await createJob(s.redis, newJob("j1", { state: "awaiting_upload", uploadExpiresAt: T0 + 60_000 }), T0);
    const results = await Promise.all(
      Array.from({ length: 20 }, () => markUploaded(s.redis, "j1", { sizeBytes: 1234 }, T0 + 10)),
    );
    expect(results.filter((r) => r === "queued")).toHaveLength(1);
    expect(results.filter((r) => r === "duplicate")).toHaveLength(19);
    expect((await getStats(s.redis, T0 + 10)).queued).toBe(1);
    expect((await getJob(s.redis, "j1"))?.input.sizeBytes).toBe(1234);

    // A replay after the job ran does not move it back either.
    await claimNextJob(s.redis, { machineId: "m1", leaseSeconds: 60, nowMs: T0 + 20 });
    expect(await markUploaded(s.redis, "j1", {}, T0 + 30)).toBe("duplicate");
    expect((await getJob(s.redis, "j1"))?.state).toBe("running");
    expect((await getStats(s.redis, T0 + 30)).queued).toBe(0);
  });

  test("an upload for an unknown job is reported as unknown and creates nothing", async () => {
    expect(await markUploaded(s.redis, "ghost", {}, T0)).toBe("unknown");
    expect(await getJob(s.redis, "ghost")).toBeNull();
  });
});

describe("machine events", () => {
  test("completed finishes the job; a second completed and a late progress change nothing", async () => {
    const claim = await runningJob("j1");
    const base = { jobId: "j1", machineId: "m1", attempt: claim.attempt };
    const done = await applyMachineEvent(s.redis, event({ type: "completed", ...base, outputs, probe }), T0 + 5000);
    expect(done).toMatchObject({ action: "continue", becameTerminal: true, job: { state: "completed", progress: 1 } });
    expect(done.job?.outputs).toEqual(outputs);
    const before = await getJob(s.redis, "j1");

    const again = await applyMachineEvent(s.redis, event({ type: "completed", ...base, outputs, probe }), T0 + 6000);
    expect(again).toMatchObject({ action: "continue", becameTerminal: false });
    const late = await applyMachineEvent(
      s.redis,
      event({ type: "progress", ...base, progress: 0.4, stage: "transcoding" }),
      T0 + 7000,
    );
    expect(late.action).toBe("abort");
    const failedLate = await applyMachineEvent(
      s.redis,
      event({ type: "failed", ...base, error: { code: "internal", message: "x" }, retryable: false }),
      T0 + 8000,
    );
    expect(failedLate).toMatchObject({ action: "abort", becameTerminal: false });
    expect(await getJob(s.redis, "j1")).toEqual(before);
  });

  test("progress and heartbeats extend the lease and record progress", async () => {
    const claim = await runningJob("j1");
    const res = await applyMachineEvent(
      s.redis,
      event({
        type: "progress",
        jobId: "j1",
        machineId: "m1",
        attempt: claim.attempt,
        progress: 0.25,
        stage: "transcoding",
      }),
      T0 + 30_000,
    );
    expect(res.action).toBe("continue");
    expect(res.job).toMatchObject({
      progress: 0.25,
      stage: "transcoding",
      leaseExpiresAt: new Date(T0 + 90_000).toISOString(),
    });
    const hb = await applyMachineEvent(
      s.redis,
      event({ type: "heartbeat", jobId: "j1", machineId: "m1", attempt: 1 }),
      T0 + 50_000,
    );
    expect(hb.job?.leaseExpiresAt).toBe(new Date(T0 + 110_000).toISOString());
  });

  test("events from another machine, an older attempt, or about a missing job get abort and change nothing", async () => {
    await runningJob("j1");
    const before = await getJob(s.redis, "j1");
    const other = await applyMachineEvent(
      s.redis,
      event({ type: "heartbeat", jobId: "j1", machineId: "m2", attempt: 1 }),
      T0 + 2000,
    );
    const older = await applyMachineEvent(
      s.redis,
      event({ type: "completed", jobId: "j1", machineId: "m1", attempt: 7, outputs, probe }),
      T0 + 2000,
    );
    const missing = await applyMachineEvent(
      s.redis,
      event({ type: "heartbeat", jobId: "nope", machineId: "m1", attempt: 1 }),
      T0,
    );
    expect([other.action, older.action, missing.action]).toEqual(["abort", "abort", "abort"]);
    expect(missing.job).toBeNull();
    expect(await getJob(s.redis, "j1")).toEqual(before);
  });

  test("a retryable failure goes back to the queue while attempts remain, a final one fails the job", async () => {
    await runningJob("j1");
    const error = { code: "transcode_failed" as const, message: "ffmpeg exited 1" };
    const first = await applyMachineEvent(
      s.redis,
      event({ type: "failed", jobId: "j1", machineId: "m1", attempt: 1, error, retryable: true }),
      T0 + 2000,
    );
    expect(first).toMatchObject({ action: "continue", becameTerminal: false, job: { state: "pending", attempts: 1 } });
    const final = await applyMachineEvent(
      s.redis,
      event({ type: "failed", jobId: "j1", machineId: "m1", attempt: 1, error, retryable: false }),
      T0 + 3000,
    );
    expect(final.action).toBe("abort");
    const claim = await claimNextJob(s.redis, { machineId: "m2", leaseSeconds: 60, nowMs: T0 + 4000 });
    expect(claim?.attempt).toBe(2);
    const failed = await applyMachineEvent(
      s.redis,
      event({ type: "failed", jobId: "j1", machineId: "m2", attempt: 2, error, retryable: false }),
      T0 + 5000,
    );
    expect(failed).toMatchObject({ becameTerminal: true, job: { state: "failed", error } });
  });

  test("released gives the job back without counting the attempt", async () => {
    await runningJob("j1");
    const res = await applyMachineEvent(
      s.redis,
      event({ type: "released", jobId: "j1", machineId: "m1", attempt: 1, reason: "SIGTERM" }),
      T0 + 2000,
    );
    expect(res).toMatchObject({ action: "continue", becameTerminal: false, job: { state: "pending", attempts: 0 } });
    expect(res.job?.leaseExpiresAt).toBeUndefined();
    const claim = await claimNextJob(s.redis, { machineId: "m2", leaseSeconds: 60, nowMs: T0 + 3000 });
    expect(claim).toMatchObject({ jobId: "j1", attempt: 1 });
  });
});

describe("cancel and retry", () => {
  test("canceling a pending job takes it out of the queue", async () => {
    await createJob(s.redis, newJob("j1"), T0);
    const res = await cancelJob(s.redis, "j1", T0 + 1);
    expect(res).toMatchObject({ ok: true, job: { state: "canceled" } });
    expect(await claimNextJob(s.redis, { machineId: "m1", leaseSeconds: 60, nowMs: T0 + 2 })).toBeNull();
    expect(await cancelJob(s.redis, "j1", T0 + 3)).toMatchObject({ ok: false, reason: "invalid_state" });
    expect(await cancelJob(s.redis, "nope", T0 + 3)).toEqual({ ok: false, reason: "not_found" });
  });

  test("canceling a running job makes its machine's next event abort", async () => {
    await runningJob("j1");
    expect(await cancelJob(s.redis, "j1", T0 + 2000)).toMatchObject({ ok: true, job: { state: "canceled" } });
    const hb = await applyMachineEvent(
      s.redis,
      event({ type: "heartbeat", jobId: "j1", machineId: "m1", attempt: 1 }),
      T0 + 3000,
    );
    expect(hb.action).toBe("abort");
    const done = await applyMachineEvent(
      s.redis,
      event({ type: "completed", jobId: "j1", machineId: "m1", attempt: 1, outputs, probe }),
      T0 + 4000,
    );
    expect(done).toMatchObject({ action: "abort", becameTerminal: false, job: { state: "canceled" } });
  });

  test("retry puts a failed job back in the queue with attempts reset and the error cleared", async () => {
    await runningJob("j1");
    await applyMachineEvent(
      s.redis,
      event({
        type: "failed",
        jobId: "j1",
        machineId: "m1",
        attempt: 1,
        error: { code: "internal", message: "x" },
        retryable: false,
      }),
      T0 + 2000,
    );
    const res = await retryJob(s.redis, "j1", T0 + 3000);
    expect(res).toMatchObject({ ok: true, job: { state: "pending", attempts: 0, progress: 0 } });
    expect(res.ok && res.job.error).toBeFalsy();
    expect((await claimNextJob(s.redis, { machineId: "m1", leaseSeconds: 60, nowMs: T0 + 4000 }))?.jobId).toBe("j1");
    expect(await retryJob(s.redis, "j1", T0 + 5000)).toMatchObject({ ok: false, reason: "invalid_state" });
  });

  test("a job canceled before its upload arrived is retried into the queue and leaves the upload expiry", async () => {
    await createJob(s.redis, newJob("j1", { state: "awaiting_upload", uploadExpiresAt: T0 + 1000 }), T0);
    await cancelJob(s.redis, "j1", T0 + 1);
    expect(await retryJob(s.redis, "j1", T0 + 2)).toMatchObject({ ok: true, job: { state: "pending" } });
    expect(await expireStaleUploads(s.redis, T0 + 5000)).toEqual([]);
    expect((await claimNextJob(s.redis, { machineId: "m1", leaseSeconds: 60, nowMs: T0 + 6000 }))?.jobId).toBe("j1");
  });
});

test("stats count queued and running jobs, the oldest queued age and machines by state", async () => {
  await createJob(s.redis, newJob("a"), T0);
  await createJob(s.redis, newJob("b"), T0 + 1000);
  await createJob(s.redis, newJob("c"), T0 + 2000);
  await registerCreatedMachine(
    s.redis,
    { token: "t", machineId: "m1", name: "tcoder-t", region: "iad", flyState: "created" },
    T0,
  );
  await registerCreatedMachine(
    s.redis,
    { token: "u", machineId: "m2", name: "tcoder-u", region: "iad", flyState: "created" },
    T0,
  );
  await claimNextJob(s.redis, { machineId: "m1", leaseSeconds: 60, nowMs: T0 + 3000 });
  const stats = await getStats(s.redis, T0 + 11_000);
  expect(stats).toEqual({
    queued: 2,
    running: 1,
    oldestQueuedAgeSeconds: 10,
    machines: { starting: 1, idle: 0, busy: 1, stopping: 0, stopped: 0 },
    usage: expect.objectContaining({ storedBytes: 0 }),
  });
});

test("a client without automatic deserialization reads the same records", async () => {
  const raw = new Redis({
    url: s.env.UPSTASH_REDIS_REST_URL,
    token: s.env.UPSTASH_REDIS_REST_TOKEN,
    automaticDeserialization: false,
  });
  await createJob(raw, newJob("42", { metadata: { n: "7" } }), T0);
  const claim = await claimNextJob(raw, { machineId: "1234", leaseSeconds: 60, nowMs: T0 + 1 });
  expect(claim).toMatchObject({ jobId: "42", attempt: 1 });
  expect(await getJob(raw, "42")).toEqual(await getJob(s.redis, "42"));
  expect(await getJob(raw, "42")).toMatchObject({ id: "42", machineId: "1234", metadata: { n: "7" } });
  expect(await getStats(raw, T0 + 1)).toEqual(await getStats(s.redis, T0 + 1));
});
