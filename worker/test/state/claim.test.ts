/**
 * The atomic claim and lease recovery, against real Redis through the Upstash REST bridge.
 */
import { expect, test } from "vitest";
import {
  applyMachineEvent,
  claimNextJob,
  createJob,
  getJob,
  getStats,
  inputKeyFor,
  keys,
  readPool,
  recoverExpiredLeases,
  registerCreatedMachine,
} from "../../src/state/index.ts";
import { useStateServices } from "./services.ts";

const s = useStateServices();

const T0 = Date.UTC(2026, 10, 29, 12, 0, 0);
const create = (id: string, nowMs: number, maxAttempts = 3) =>
  createJob(
    s.redis,
    { id, preset: "hls-small", input: { key: inputKeyFor(id, "in.mp4") }, state: "pending", maxAttempts },
    nowMs,
  );

test("concurrent claimers never get the same job and every job is claimed exactly once", async () => {
  const ids = Array.from({ length: 40 }, (_, i) => `job${i}`);
  for (const [i, id] of ids.entries()) await create(id, T0 + i);
  const machines = Array.from({ length: 8 }, (_, i) => `m${i}`);
  const claims = (
    await Promise.all(
      machines.map(async (machineId) => {
        const mine = [];
        for (;;) {
          const claim = await claimNextJob(s.redis, { machineId, leaseSeconds: 60, nowMs: T0 + 1000 });
          if (!claim) return mine;
          mine.push({ machineId, ...claim });
        }
      }),
    )
  ).flat();

  expect(claims.map((c) => c.jobId).sort()).toEqual([...ids].sort());
  // Every claim agrees with the record it produced: nothing is half-claimed.
  for (const claim of claims) {
    const job = await getJob(s.redis, claim.jobId);
    expect(job).toMatchObject({ state: "running", machineId: claim.machineId, attempts: 1, preset: "hls-small" });
    expect(job?.leaseExpiresAt).toBe(new Date(claim.leaseExpiresAt).toISOString());
    expect(claim.inputKey).toBe(inputKeyFor(claim.jobId, "in.mp4"));
  }
  expect(await getStats(s.redis, T0 + 1000)).toMatchObject({ queued: 0, running: 40 });
});

test("the queue is first in, first out", async () => {
  await create("late", T0 + 50);
  await create("early", T0);
  expect((await claimNextJob(s.redis, { machineId: "m1", leaseSeconds: 60, nowMs: T0 + 100 }))?.jobId).toBe("early");
});

test("a claim marks a pool machine busy with that job; a machine being stopped claims nothing", async () => {
  await create("j1", T0);
  await create("j2", T0 + 1);
  await registerCreatedMachine(
    s.redis,
    { token: "t1", machineId: "m1", name: "tcoder-t1", region: "iad", flyState: "created" },
    T0,
  );
  await claimNextJob(s.redis, { machineId: "m1", leaseSeconds: 60, nowMs: T0 + 10 });
  expect(await readPool(s.redis)).toMatchObject([{ id: "m1", state: "busy", jobId: "j1" }]);
  await s.redis.hset(keys.machine("m2"), { state: "stopping" });
  expect(await claimNextJob(s.redis, { machineId: "m2", leaseSeconds: 60, nowMs: T0 + 20 })).toBeNull();
  expect((await getStats(s.redis, T0 + 20)).queued).toBe(1);
});

test("a claimer the pool does not know gets the job but does not join the pool", async () => {
  await create("j1", T0);
  expect((await claimNextJob(s.redis, { machineId: "stranger", leaseSeconds: 60, nowMs: T0 }))?.jobId).toBe("j1");
  expect(await readPool(s.redis)).toEqual([]);
});

test("an expired lease requeues the job; after maxAttempts expired claims it fails with lease_expired", async () => {
  await create("j1", T0, 3);
  let now = T0;
  for (let attempt = 1; attempt <= 3; attempt++) {
    const claim = await claimNextJob(s.redis, { machineId: `m${attempt}`, leaseSeconds: 60, nowMs: now });
    expect(claim).toMatchObject({ jobId: "j1", attempt });
    // Before expiry nothing happens.
    expect(await recoverExpiredLeases(s.redis, now + 59_000)).toEqual({ requeued: [], failed: [] });
    now += 61_000;
    const recovered = await recoverExpiredLeases(s.redis, now);
    if (attempt < 3) {
      expect(recovered).toEqual({ requeued: ["j1"], failed: [] });
      expect(await getJob(s.redis, "j1")).toMatchObject({ state: "pending", attempts: attempt });
    } else {
      expect(recovered.requeued).toEqual([]);
      expect(recovered.failed).toMatchObject([
        { id: "j1", state: "failed", attempts: 3, error: { code: "lease_expired" } },
      ]);
    }
  }
  // The machine that lost the lease is told to abort.
  const late = await applyMachineEvent(s.redis, { type: "heartbeat", jobId: "j1", machineId: "m3", attempt: 3 }, now);
  expect(late.action).toBe("abort");
  expect(await claimNextJob(s.redis, { machineId: "m9", leaseSeconds: 60, nowMs: now })).toBeNull();
});

test("a heartbeat keeps the lease alive through recovery", async () => {
  await create("j1", T0);
  await claimNextJob(s.redis, { machineId: "m1", leaseSeconds: 60, nowMs: T0 });
  await applyMachineEvent(s.redis, { type: "heartbeat", jobId: "j1", machineId: "m1", attempt: 1 }, T0 + 50_000);
  expect(await recoverExpiredLeases(s.redis, T0 + 70_000)).toEqual({ requeued: [], failed: [] });
  expect((await getJob(s.redis, "j1"))?.state).toBe("running");
  expect((await recoverExpiredLeases(s.redis, T0 + 111_000)).requeued).toEqual(["j1"]);
});
