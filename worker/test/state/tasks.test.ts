/**
 * Chunked jobs in Redis: the split, the claim of tasks, progress, retries, recovery, cancel and
 * finalize, against real Redis through the Upstash REST bridge.
 */
import { expect, test } from "vitest";
import type { MachineEvent, ProbeSummary, SplitPlan, TaskResult } from "../../src/contract/index.ts";
import {
  applyMachineEvent,
  cancelJob,
  claimNextJob,
  createJob,
  deleteJob,
  getJob,
  getStats,
  inputKeyFor,
  readTasks,
  recoverExpiredLeases,
  retryJob,
} from "../../src/state/index.ts";
import { useStateServices } from "./services.ts";

const s = useStateServices();
const T0 = Date.UTC(2026, 10, 29, 12, 0, 0);

const probe: ProbeSummary = { formatName: "mov,mp4", durationSeconds: 30, sizeBytes: 1000 };
const plan: SplitPlan = {
  probe,
  tasks: [
    { name: "audio", spec: { kind: "audio", durationSeconds: 30 } },
    {
      name: "v0",
      spec: {
        kind: "video",
        index: 0,
        startFrame: 0,
        frames: 60,
        startSeconds: 0,
        durationSeconds: 2,
        firstSegment: 0,
      },
    },
    {
      name: "v1",
      spec: { kind: "video", index: 1, startFrame: 60, startSeconds: 2, durationSeconds: 28, firstSegment: 1 },
    },
    { name: "stills", spec: { kind: "stills", durationSeconds: 30 } },
  ],
};
const videoResult: TaskResult = {
  kind: "video",
  tracks: [
    {
      name: "360p",
      init: { uri: "hls/360p/v0.1/init.mp4", sha256: "ab", sizeBytes: 800 },
      codec: "avc1.4D401E",
      segments: [{ uri: "hls/360p/v0.1/seg_00000.m4s", durationSeconds: 2, sizeBytes: 1000 }],
    },
  ],
};

async function splitJob(id: string, maxAttempts = 3) {
  await createJob(
    s.redis,
    { id, preset: "hls-small", input: { key: inputKeyFor(id, "in.mp4") }, state: "pending", maxAttempts },
    T0,
  );
  const claim = await claimNextJob(s.redis, { machineId: "m0", leaseSeconds: 60, nowMs: T0 + 10 });
  expect(claim?.jobId).toBe(id);
  const split = await applyMachineEvent(
    s.redis,
    { type: "split", jobId: id, machineId: "m0", attempt: 1, plan },
    T0 + 1000,
  );
  expect(split.action).toBe("continue");
  return split;
}

const claimTask = (machineId: string, nowMs: number) => claimNextJob(s.redis, { machineId, leaseSeconds: 60, nowMs });
const send = (event: MachineEvent, nowMs: number) => applyMachineEvent(s.redis, event, nowMs);

test("a split queues the job's tasks in plan order; the job stays running and frees its machine", async () => {
  const split = await splitJob("j1");
  expect(split.job).toMatchObject({ state: "running", playable: false, tasks: { total: 5, pending: 5, running: 0 } });
  // The job is running (stats count jobs), its machine is free, its tasks are queued.
  expect(await getStats(s.redis, T0 + 1000)).toMatchObject({ queued: 4, running: 1 });

  const claimed = [];
  for (let i = 0; i < 4; i++) claimed.push(await claimTask(`m${i}`, T0 + 2000));
  expect(claimed.map((c) => c?.task?.name)).toEqual(["audio", "v0", "v1", "stills"]);
  expect(claimed[1]).toMatchObject({ jobId: "j1", attempt: 1, preset: "hls-small", probe, task: { attempt: 1 } });
  expect(claimed[1]?.task?.spec).toEqual(plan.tasks[1]?.spec);
  expect(await claimTask("m9", T0 + 2000)).toBeNull();
  expect(await getStats(s.redis, T0 + 2000)).toMatchObject({ queued: 0, running: 1 });
  expect((await getJob(s.redis, "j1"))?.tasks).toEqual({ total: 5, pending: 1, running: 4, done: 0 });

  // A replayed split changes nothing.
  const replay = await send({ type: "split", jobId: "j1", machineId: "m0", attempt: 1, plan }, T0 + 2500);
  expect(replay.action).toBe("continue");
  expect(await getStats(s.redis, T0 + 2500)).toMatchObject({ queued: 0, running: 1 });
});

test("progress is the weighted sum of the tasks; the last task queues finalize, whose completion completes the job", async () => {
  await splitJob("j2");
  const claims = [];
  for (let i = 0; i < 4; i++) claims.push(await claimTask(`m${i}`, T0 + 2000));
  const [audio, v0, v1, stills] = claims;
  const base = (c: typeof audio, machineId: string) => ({
    jobId: "j2",
    machineId,
    attempt: c?.task?.attempt ?? 0,
    task: c?.task?.name ?? "",
  });

  await send({ type: "progress", ...base(v1, "m2"), stage: "transcoding", progress: 0.5 }, T0 + 3000);
  const halfway = (await getJob(s.redis, "j2"))?.progress ?? 0;
  // v1 is 28 of ~33.9 weight units (video 30 s + audio 1.5 + stills 3 + finalize 1.5): half of it is ~0.41.
  expect(halfway).toBeGreaterThan(0.38);
  expect(halfway).toBeLessThan(0.44);

  for (const [c, m, kind] of [
    [audio, "m0", "audio"],
    [v0, "m1", "video"],
    [v1, "m2", "video"],
  ] as const) {
    const result: TaskResult =
      kind === "audio" ? { kind: "audio", tracks: videoResult.tracks, subtitles: [] } : videoResult;
    const done = await send({ type: "task_completed", ...base(c, m), result }, T0 + 4000);
    expect(done.action).toBe("continue");
  }
  // A replayed completion changes nothing.
  expect((await send({ type: "task_completed", ...base(v0, "m1"), result: videoResult }, T0 + 4100)).action).toBe(
    "continue",
  );
  expect(await claimTask("m5", T0 + 4200)).toBeNull();
  await send({ type: "task_completed", ...base(stills, "m3"), result: { kind: "stills" } }, T0 + 4500);

  const finalize = await claimTask("m5", T0 + 5000);
  expect(finalize?.task?.name).toBe("finalize");
  expect(Object.keys(finalize?.task?.results ?? {}).sort()).toEqual(["audio", "stills", "v0", "v1"]);
  expect(finalize?.task?.results.v0).toEqual(videoResult);
  const outputs = { manifest: "outputs/j2/manifest.json", renditions: [] };
  const completed = await send(
    {
      type: "completed",
      ...base(finalize, "m5"),
      outputs,
      probe,
      usage: { outputSeconds: 30, packageBytes: 5000, objects: 12 },
    },
    T0 + 6000,
  );
  expect(completed.becameTerminal).toBe(true);
  const job = await getJob(s.redis, "j2");
  expect(job).toMatchObject({ state: "completed", progress: 1, playable: true, tasks: { total: 5, done: 5 } });
  // Every task's machine time is the job's, by task.
  expect(job?.usage?.attempts.map((a) => a.task ?? "job").sort()).toEqual(
    ["audio", "finalize", "job", "stills", "v0", "v1"].sort(),
  );
  expect(await getStats(s.redis, T0 + 6000)).toMatchObject({ queued: 0, running: 0 });
});

test("a failed task is retried alone; the job fails when a task runs out of attempts", async () => {
  await splitJob("j3", 2);
  const audio = await claimTask("m0", T0 + 2000);
  const v0 = await claimTask("m1", T0 + 2000);
  const error = { code: "transcode_failed" as const, message: "boom" };
  const first = await send(
    { type: "failed", jobId: "j3", machineId: "m1", attempt: 1, task: "v0", error, retryable: true },
    T0 + 3000,
  );
  expect(first).toMatchObject({ action: "continue", becameTerminal: false, job: { state: "running" } });
  // v0 is queued again where it was: ahead of v1.
  const again = await claimTask("m2", T0 + 3100);
  expect(again?.task).toMatchObject({ name: "v0", attempt: 2 });
  const last = await send(
    { type: "failed", jobId: "j3", machineId: "m2", attempt: 2, task: "v0", error, retryable: true },
    T0 + 4000,
  );
  expect(last.becameTerminal).toBe(true);
  expect(last.job).toMatchObject({ state: "failed", error });
  // The other running task's machine is told to stop; queued tasks are never claimed.
  const audioBeat = await send(
    { type: "heartbeat", jobId: "j3", machineId: "m0", attempt: audio?.task?.attempt ?? 0, task: "audio" },
    T0 + 4100,
  );
  expect(audioBeat.action).toBe("abort");
  expect(v0?.task?.name).toBe("v0");
  expect(await claimTask("m3", T0 + 4200)).toBeNull();
  expect(await getStats(s.redis, T0 + 4200)).toMatchObject({ queued: 0, running: 0 });
});

test("a task whose machine went silent is queued again by lease recovery; cancel stops every task", async () => {
  await splitJob("j4");
  const audio = await claimTask("m0", T0 + 2000);
  await claimTask("m1", T0 + 2000);
  const recovered = await recoverExpiredLeases(s.redis, T0 + 2000 + 61_000);
  expect(recovered.requeued.sort()).toEqual(["j4/audio", "j4/v0"]);
  expect((await claimTask("m2", T0 + 70_000))?.task).toMatchObject({ name: "audio", attempt: 2 });
  // The silent machine's late heartbeat belongs to an attempt that no longer holds the task.
  const late = await send(
    { type: "heartbeat", jobId: "j4", machineId: "m0", attempt: audio?.task?.attempt ?? 0, task: "audio" },
    T0 + 70_100,
  );
  expect(late.action).toBe("abort");

  expect((await cancelJob(s.redis, "j4", T0 + 71_000)).ok).toBe(true);
  const beat = await send({ type: "heartbeat", jobId: "j4", machineId: "m2", attempt: 2, task: "audio" }, T0 + 71_100);
  expect(beat.action).toBe("abort");
  expect(await claimTask("m3", T0 + 71_200)).toBeNull();
  const { tasks } = await readTasks(s.redis, "j4");
  expect(tasks.filter((t) => t.state === "running")).toEqual([]);
  expect(await getStats(s.redis, T0 + 71_200)).toMatchObject({ queued: 0, running: 0 });
});

test("a failed chunked job that is retried is split anew; deleting it forgets its tasks", async () => {
  await splitJob("j5", 1);
  const audio = await claimTask("m1", T0 + 2000);
  const error = { code: "transcode_failed" as const, message: "boom" };
  const failed = await send(
    {
      type: "failed",
      jobId: "j5",
      machineId: "m1",
      attempt: audio?.task?.attempt ?? 0,
      task: "audio",
      error,
      retryable: false,
    },
    T0 + 3000,
  );
  expect(failed.job).toMatchObject({ state: "failed", error });

  expect((await retryJob(s.redis, "j5", T0 + 4000)).ok).toBe(true);
  const retried = await getJob(s.redis, "j5");
  expect(retried?.tasks).toBeUndefined();
  // The whole job is claimed and split again; its tasks start from their first attempt.
  expect((await claimTask("m2", T0 + 5000))?.task).toBeUndefined();
  const again = await send({ type: "split", jobId: "j5", machineId: "m2", attempt: 1, plan }, T0 + 6000);
  expect(again.job?.tasks).toEqual({ total: 5, pending: 5, running: 0, done: 0 });
  const first = await claimTask("m3", T0 + 7000);
  expect(first?.task).toMatchObject({ name: "audio", attempt: 1 });

  expect((await deleteJob(s.redis, "j5", T0 + 8000)).result).toBe("deleted");
  expect((await readTasks(s.redis, "j5")).tasks).toEqual([]);
  const beat = await send({ type: "heartbeat", jobId: "j5", machineId: "m3", attempt: 1, task: "audio" }, T0 + 8100);
  expect(beat.action).toBe("abort");
  // The machine is free again (no job of its own any more).
  expect(await s.redis.hget("tcoder:machine:m3", "jobId")).toBeNull();
});
