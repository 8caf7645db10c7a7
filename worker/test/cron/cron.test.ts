/**
 * The minute cron against real Redis (Upstash REST bridge) and the local Fly Machines API:
 * pool reconciliation, the idle clock, lease recovery, upload expiry, then admission.
 */
import { expect, test } from "vitest";
import { runScheduled } from "../../src/cron/index.ts";
import {
  applyMachineEvent,
  cancelJob,
  claimNextJob,
  createJob,
  getJob,
  inputKeyFor,
  type NewJob,
  readPool,
} from "../../src/state/index.ts";
import { FLY_APP, useStateServices } from "../state/services.ts";

const s = useStateServices({ MAX_MACHINES: "3", MACHINE_IDLE_STOP_SECONDS: "300", JOB_LEASE_SECONDS: "60" });

const T0 = Date.UTC(2026, 10, 29, 12, 0, 0);
const IDLE_MS = 300_000;
const cron = (nowMs: number) => runScheduled(s.env, nowMs, { redis: s.redis, fly: s.flyClient });
const job = (id: string, overrides: Partial<NewJob> = {}): NewJob => ({
  id,
  preset: "hls-ladder",
  input: { key: inputKeyFor(id, "a.mp4") },
  state: "pending",
  maxAttempts: 3,
  ...overrides,
});
const flyState = (id: string) => s.fly.machines(FLY_APP).find((m) => m.id === id)?.state;
const poolState = async (id: string) => (await readPool(s.redis)).find((m) => m.id === id)?.state;
async function waitForFly(id: string, state: "started" | "stopped") {
  const instanceId = (await s.flyClient.getMachine(id)).instance_id;
  await s.flyClient.waitMachine(id, { state, timeoutSeconds: 10, ...(instanceId ? { instanceId } : {}) });
}

test("idle is measured from the last finished job: polling never keeps a machine up, a busy machine is never stopped", async () => {
  await createJob(s.redis, job("short"), T0);
  await createJob(s.redis, job("long"), T0);
  const first = await cron(T0);
  expect(first.created).toHaveLength(2);
  const [a, b] = first.created as [string, string];
  await Promise.all([waitForFly(a, "started"), waitForFly(b, "started")]);

  const claimA = await claimNextJob(s.redis, { machineId: a, leaseSeconds: 60, nowMs: T0 + 1000 });
  const claimB = await claimNextJob(s.redis, { machineId: b, leaseSeconds: 60, nowMs: T0 + 1000 });
  const finishedAt = T0 + 10_000;
  await applyMachineEvent(
    s.redis,
    {
      type: "completed",
      jobId: claimA?.jobId as string,
      machineId: a,
      attempt: 1,
      outputs: { manifest: "m.json", renditions: [] },
      probe: { formatName: "mp4", durationSeconds: 1, sizeBytes: 1 },
    },
    finishedAt,
  );
  // A polls for work and B heartbeats its long job, both well past the idle threshold.
  const pollUntil = finishedAt + IDLE_MS + 120_000;
  for (let t = finishedAt; t <= pollUntil; t += 30_000) {
    expect(await claimNextJob(s.redis, { machineId: a, leaseSeconds: 60, nowMs: t })).toBeNull();
    const hb = await applyMachineEvent(
      s.redis,
      { type: "heartbeat", jobId: claimB?.jobId as string, machineId: b, attempt: 1 },
      t,
    );
    expect(hb.action).toBe("continue");
    if (t === finishedAt + IDLE_MS - 10_000) {
      const early = await cron(t);
      expect(early.stopped).toEqual([]);
    }
  }
  // A's clock started when it finished its job, however much it polled since.
  expect((await readPool(s.redis)).find((m) => m.id === a)?.lastJobFinishedAt).toBe(finishedAt);
  const late = await cron(finishedAt + IDLE_MS + 20_000);
  expect(late.stopped).toEqual([a]);
  expect(await poolState(a)).toBe("stopping");
  expect(await poolState(b)).toBe("busy");
  await waitForFly(a, "stopped");
  expect(flyState(b)).toBe("started");

  // Next minute the pool learns Fly stopped it.
  await cron(finishedAt + IDLE_MS + 80_000);
  expect(await poolState(a)).toBe("stopped");
  expect(await poolState(b)).toBe("busy");
});

test("a machine started but never given a job is stopped once idle since it started", async () => {
  await createJob(s.redis, job("j"), T0);
  const [m] = (await cron(T0)).created as [string];
  await waitForFly(m, "started");
  // The job is canceled before any machine claims it.
  expect((await cancelJob(s.redis, "j", T0 + 1000)).ok).toBe(true);
  expect((await cron(T0 + IDLE_MS - 1000)).stopped).toEqual([]);
  expect(await poolState(m)).toBe("idle");
  expect((await cron(T0 + IDLE_MS)).stopped).toEqual([m]);
});

test("a machine Fly destroyed leaves the pool; one Fly stopped is reused before a new one is created", async () => {
  await createJob(s.redis, job("j1"), T0);
  await createJob(s.redis, job("j2"), T0);
  const [x, y] = (await cron(T0)).created as [string, string];
  await Promise.all([waitForFly(x, "started"), waitForFly(y, "started")]);
  await s.flyClient.deleteMachine(x, { force: true });
  await s.flyClient.stopMachine(y);
  await waitForFly(y, "stopped");

  const report = await cron(T0 + 120_000);
  expect(report.removed).toEqual([x]);
  expect(report.markedStopped).toEqual([y]);
  // Two jobs still queued, cap 3: y is started again, one new machine replaces x.
  expect(report.started).toEqual([y]);
  expect(report.created).toHaveLength(1);
  const pool = await readPool(s.redis);
  expect(pool.map((m) => m.id).sort()).toEqual([y, report.created[0]].sort());
  expect(s.fly.machines(FLY_APP).filter((m) => m.state !== "destroyed")).toHaveLength(2);
});

test("expired leases and uploads are settled and their clients called back", async () => {
  await createJob(s.redis, job("lost", { maxAttempts: 1, callbackUrl: "https://client.example/hook" }), T0);
  await createJob(
    s.redis,
    job("never-uploaded", {
      state: "awaiting_upload",
      uploadExpiresAt: T0 + 3600_000,
      callbackUrl: "https://client.example/hook",
    }),
    T0,
  );
  await createJob(s.redis, job("fresh-upload", { state: "awaiting_upload", uploadExpiresAt: T0 + 7200_000 }), T0);
  await claimNextJob(s.redis, { machineId: "ghost", leaseSeconds: 60, nowMs: T0 });

  const report = await cron(T0 + 3600_000);
  expect(report.failed).toEqual(["lost"]);
  expect(report.expired).toEqual(["never-uploaded"]);
  expect(await getJob(s.redis, "lost")).toMatchObject({ state: "failed", error: { code: "lease_expired" } });
  expect((await getJob(s.redis, "never-uploaded"))?.state).toBe("expired");
  expect((await getJob(s.redis, "fresh-upload"))?.state).toBe("awaiting_upload");
  expect(s.callbacks).toEqual(
    expect.arrayContaining([
      expect.objectContaining({ jobId: "lost", state: "failed" }),
      expect.objectContaining({ jobId: "never-uploaded", state: "expired" }),
    ]),
  );
  expect(s.callbacks).toHaveLength(2);
});

test("a Fly outage is logged in the report and never stops the cron's Redis work", async () => {
  await createJob(s.redis, job("lost", { maxAttempts: 1 }), T0);
  await claimNextJob(s.redis, { machineId: "m", leaseSeconds: 60, nowMs: T0 });
  s.fly.setFaults({ rate: 1, statuses: [503] });
  const report = await cron(T0 + 120_000);
  s.fly.setFaults(undefined);
  expect(report.failed).toEqual(["lost"]);
  expect(report.errors.some((e) => e.startsWith("reconcile: server_error 503"))).toBe(true);
});

test("a stop Fly refuses leaves the machine idle, and the next run stops it", async () => {
  await createJob(s.redis, job("j"), T0);
  const [m] = (await cron(T0)).created as [string];
  await waitForFly(m, "started");
  expect((await cancelJob(s.redis, "j", T0 + 1000)).ok).toBe(true);
  s.fly.setFaults({ rate: 1, statuses: [503] });
  const refused = await cron(T0 + IDLE_MS);
  s.fly.setFaults(undefined);
  expect(refused.stopped).toEqual([]);
  expect(refused.errors.some((e) => e.startsWith(`stop ${m}: server_error 503`))).toBe(true);
  expect(await poolState(m)).toBe("idle");
  expect((await cron(T0 + IDLE_MS + 60_000)).stopped).toEqual([m]);
});
