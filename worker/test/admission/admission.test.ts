/**
 * Admission control against real Redis (Upstash REST bridge) and the local Fly Machines API.
 */
import { expect, test } from "vitest";
import { admitMachines } from "../../src/admission/index.ts";
import { createFlyClient } from "../../src/fly/client.ts";
import { claimNextJob, createJob, getStats, inputKeyFor, readPool, reconcilePool } from "../../src/state/index.ts";
import { FLY_APP, useStateServices } from "../state/services.ts";

const s = useStateServices({ MAX_MACHINES: "3" });

const T0 = Date.UTC(2026, 10, 29, 12, 0, 0);
const queueJobs = async (n: number) => {
  for (let i = 0; i < n; i++)
    await createJob(
      s.redis,
      {
        id: `j${i}`,
        preset: "hls-ladder",
        input: { key: inputKeyFor(`j${i}`, "a.mp4") },
        state: "pending",
        maxAttempts: 3,
      },
      T0 + i,
    );
};
const liveFlyMachines = () => s.fly.machines(FLY_APP).filter((m) => m.state !== "destroyed");

test("10 concurrent admissions with 8 queued jobs and a cap of 3 create exactly 3 machines", async () => {
  await queueJobs(8);
  const results = await Promise.all(
    Array.from({ length: 10 }, () => admitMachines(s.settings, s.redis, s.flyClient, T0)),
  );
  expect(results.flatMap((r) => r.created)).toHaveLength(3);
  expect(liveFlyMachines()).toHaveLength(3);
  const pool = await readPool(s.redis);
  expect(pool).toHaveLength(3);
  expect(new Set(pool.map((m) => m.state))).toEqual(new Set(["starting"]));
  // Created with the configured image, guest, no restarts, and exactly the machine env.
  expect(liveFlyMachines()[0]?.config).toMatchObject({
    image: s.settings.MACHINE_IMAGE,
    guest: { cpu_kind: "performance", cpus: 2, memory_mb: 4096 },
    restart: { policy: "no" },
    auto_destroy: false,
    env: { UPSTASH_REDIS_REST_URL: s.settings.UPSTASH_REDIS_REST_URL, JOB_LEASE_SECONDS: "60" },
  });

  // Later admissions add nothing while the cap is reached.
  expect((await admitMachines(s.settings, s.redis, s.flyClient, T0 + 1)).created).toEqual([]);
  expect(liveFlyMachines()).toHaveLength(3);
});

test("a machine that claimed work but is unknown to the pool and Fly does not count against the cap", async () => {
  await queueJobs(3);
  await claimNextJob(s.redis, { machineId: "not-a-fly-machine", leaseSeconds: 60, nowMs: T0 });
  const res = await admitMachines(s.settings, s.redis, s.flyClient, T0 + 1);
  expect(res.created).toHaveLength(3);
});

test("machines are wanted for queued plus running work only", async () => {
  await queueJobs(1);
  const first = await admitMachines(s.settings, s.redis, s.flyClient, T0);
  expect(first).toMatchObject({ wanted: 1 });
  expect(first.created).toHaveLength(1);
  // The one machine runs the job: still one wanted, none added.
  await claimNextJob(s.redis, { machineId: first.created[0] as string, leaseSeconds: 60, nowMs: T0 + 1 });
  expect((await admitMachines(s.settings, s.redis, s.flyClient, T0 + 2)).created).toEqual([]);
  expect(liveFlyMachines()).toHaveLength(1);
});

test("a stopped pool machine is started before any new machine is created", async () => {
  await queueJobs(1);
  const [id] = (await admitMachines(s.settings, s.redis, s.flyClient, T0)).created;
  if (!id) throw new Error("no machine created");
  await s.flyClient.stopMachine(id);
  const instanceId = (await s.flyClient.getMachine(id)).instance_id;
  await s.flyClient.waitMachine(id, { state: "stopped", timeoutSeconds: 10, ...(instanceId ? { instanceId } : {}) });
  await reconcilePool(s.redis, [{ id, flyState: "stopped", phase: "stopped" }], T0 + 120_000, 60_000);
  expect(await readPool(s.redis)).toMatchObject([{ id, state: "stopped" }]);

  // j0 is still queued: one machine wanted, and the stopped one is it.
  const again = await admitMachines(s.settings, s.redis, s.flyClient, T0 + 120_001);
  expect(again.started).toEqual([id]);
  expect(again.created).toEqual([]);
  expect(liveFlyMachines()).toHaveLength(1);
  await s.flyClient.waitMachine(id, { state: "started", timeoutSeconds: 10 });
}, 30_000);

test("Fly failing after its retries is reported, never thrown, and the reserved slots are given back", async () => {
  await queueJobs(2);
  s.fly.setFaults({ rate: 1, statuses: [500] });
  const failed = await admitMachines(s.settings, s.redis, s.flyClient, T0);
  s.fly.setFaults(undefined);
  expect(failed.created).toEqual([]);
  expect(failed.failures).toHaveLength(2);
  expect(failed.failures[0]).toMatchObject({ kind: "server_error", status: 500 });
  expect(await readPool(s.redis)).toEqual([]);
  expect((await getStats(s.redis, T0)).lastAdmissionError).toMatchObject({ status: 500 });

  const recovered = await admitMachines(s.settings, s.redis, s.flyClient, T0 + 1000);
  expect(recovered.created).toHaveLength(2);
});

test("rate limiting (429, with Retry-After) is waited out and retried within one admission", async () => {
  await queueJobs(1);
  let limited = 2;
  const waits: number[] = [];
  const fly = createFlyClient(s.settings, {
    baseDelayMs: 1,
    maxDelayMs: 5,
    sleep: async (ms) => {
      waits.push(ms);
    },
    // The first two calls are rate limited before they reach the (real, local) Fly API.
    fetch: async (input, init) =>
      limited-- > 0
        ? new Response(JSON.stringify({ error: "rate limited" }), { status: 429, headers: { "retry-after": "0.004" } })
        : fetch(input, init),
  });
  const res = await admitMachines(s.settings, s.redis, fly, T0);
  expect(res.failures).toEqual([]);
  expect(res.created).toHaveLength(1);
  expect(waits).toHaveLength(2);
  for (const ms of waits) expect(ms).toBeGreaterThanOrEqual(4);
  expect(liveFlyMachines()).toHaveLength(1);
});

test("a create whose first answer was lost and whose retry Fly answers 409 already_exists registers the machine once", async () => {
  await queueJobs(1);
  const posts: number[] = [];
  const fly = createFlyClient(s.settings, {
    baseDelayMs: 1,
    maxDelayMs: 5,
    // The first create reaches Fly but its 200 is lost, and so is the lookup by name before the retry.
    fetch: async (input, init) => {
      const res = await fetch(input, init);
      const isList = String(input).endsWith("/machines");
      if (init?.method === "POST" && isList) {
        posts.push(res.status);
        if (posts.length === 1) return new Response(JSON.stringify({ error: "bad gateway" }), { status: 502 });
      }
      if (init?.method === "GET" && isList && posts.length === 1) return new Response("{}", { status: 503 });
      return res;
    },
  });
  const res = await admitMachines(s.settings, s.redis, fly, T0);
  expect(posts).toEqual([200, 409]);
  expect(res.failures).toEqual([]);
  expect(liveFlyMachines().map((m) => m.id)).toEqual(res.created);
  expect((await readPool(s.redis)).map((m) => m.id)).toEqual(res.created);
});

test("a stopped machine whose start fails stays stopped with the error; one Fly no longer has leaves the pool", async () => {
  await queueJobs(1);
  await reconcilePool(s.redis, [{ id: "ghost", flyState: "stopped", phase: "stopped" }], T0, 60_000);
  const gone = await admitMachines(s.settings, s.redis, s.flyClient, T0 + 1);
  expect(gone.failures).toMatchObject([{ machineId: "ghost", kind: "not_found", status: 404 }]);
  expect(await readPool(s.redis)).toEqual([]);

  const [id] = (await admitMachines(s.settings, s.redis, s.flyClient, T0 + 2)).created;
  if (!id) throw new Error("no machine created");
  await s.flyClient.stopMachine(id);
  const instanceId = (await s.flyClient.getMachine(id)).instance_id;
  await s.flyClient.waitMachine(id, { state: "stopped", timeoutSeconds: 10, ...(instanceId ? { instanceId } : {}) });
  await reconcilePool(s.redis, [{ id, flyState: "stopped", phase: "stopped" }], T0 + 120_000, 60_000);
  s.fly.setFaults({ rate: 1, statuses: [500] });
  const failed = await admitMachines(s.settings, s.redis, s.flyClient, T0 + 120_001);
  s.fly.setFaults(undefined);
  expect(failed.started).toEqual([]);
  expect(await readPool(s.redis)).toMatchObject([{ id, state: "stopped", lastError: expect.stringContaining("500") }]);
});
