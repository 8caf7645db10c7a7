/**
 * The Fly Machines client against the local Fly Machines API (same paths and JSON as
 * api.machines.dev), including injected 429/500 answers.
 */
import { type LocalFlyApi, noopRunner, startFlyApi } from "@tcoder/local/fly-api";
import { afterAll, beforeAll, expect, test } from "vitest";
import {
  createFlyClientWith,
  FlyApiError,
  type FlyClient,
  type FlyClientOptions,
  machinePhase,
} from "../../src/fly/client.ts";

const APP = "tcoder-machines";
let api: LocalFlyApi;
let fly: FlyClient;
/** Values the API's fault injection draws; empty means "no fault". */
const draws: number[] = [];

beforeAll(async () => {
  api = await startFlyApi({ token: "fly-token", runner: noopRunner(), random: () => draws.shift() ?? 0.99 });
  const res = await fetch(`${api.url}/v1/apps`, {
    method: "POST",
    headers: { authorization: "Bearer fly-token", "content-type": "application/json" },
    body: JSON.stringify({ app_name: APP, org_slug: "personal" }),
  });
  expect(res.ok).toBe(true);
  fly = createFlyClientWith({ baseUrl: api.url, appName: APP, token: "fly-token", baseDelayMs: 1, maxDelayMs: 5 });
});
afterAll(async () => {
  await api?.stop();
});

/** A client of the local API (fast retries) whose calls go through `fetch`, which may lose answers. */
const clientThrough = (opts: Pick<FlyClientOptions, "fetch"> & Partial<FlyClientOptions>) =>
  createFlyClientWith({ baseUrl: api.url, appName: APP, token: "fly-token", baseDelayMs: 1, maxDelayMs: 5, ...opts });

const config = {
  image: "registry.fly.io/tcoder-machines:test",
  env: { JOB_LEASE_SECONDS: "60" },
  guest: { cpu_kind: "performance", cpus: 2, memory_mb: 4096 },
  restart: { policy: "no" as const },
  auto_destroy: false,
};

test("creates, lists, stops, starts, waits for and deletes a machine", async () => {
  const created = await fly.createMachine({ name: "tcoder-a", region: "iad", config });
  expect(created).toMatchObject({ name: "tcoder-a", region: "iad" });
  expect(created.config).toMatchObject({ image: config.image, env: config.env, guest: config.guest });
  await fly.waitMachine(created.id, { state: "started", timeoutSeconds: 10 });
  expect((await fly.listMachines()).map((m) => m.id)).toContain(created.id);

  await fly.stopMachine(created.id);
  // Fly requires the instance when waiting for a stop.
  const instanceId = (await fly.getMachine(created.id)).instance_id;
  await fly.waitMachine(created.id, { state: "stopped", timeoutSeconds: 10, ...(instanceId ? { instanceId } : {}) });
  expect(machinePhase((await fly.getMachine(created.id)).state)).toBe("stopped");

  await fly.startMachine(created.id);
  await fly.waitMachine(created.id, { state: "started", timeoutSeconds: 10 });
  expect(machinePhase((await fly.getMachine(created.id)).state)).toBe("started");

  await fly.deleteMachine(created.id, { force: true });
  const after = await fly.getMachine(created.id).catch((e: unknown) => e);
  if (after instanceof FlyApiError) expect(after.status).toBe(404);
  else expect(machinePhase((after as { state: string }).state)).toBe("gone");
});

test("429 and 500 answers are retried until the call succeeds", async () => {
  api.resetCalls();
  // Two faulted calls (each draws: fault?, which status), then a clean one.
  draws.push(0, 0, 0, 0.99);
  api.setFaults({ rate: 0.5, statuses: [429, 500] });
  const list = await fly.listMachines();
  api.setFaults(undefined);
  expect(Array.isArray(list)).toBe(true);
  expect(api.totalCalls()).toBe(3);
});

test("a fault that outlasts the retries surfaces as a typed error with its status", async () => {
  api.setFaults({ rate: 1, statuses: [500] });
  const err = await fly.listMachines().catch((e: unknown) => e);
  api.setFaults(undefined);
  expect(err).toBeInstanceOf(FlyApiError);
  expect(err).toMatchObject({ kind: "server_error", status: 500, attempts: 4 });
});

test("a 404 is not retried", async () => {
  api.resetCalls();
  const err = await fly.startMachine("does-not-exist").catch((e: unknown) => e);
  expect(err).toMatchObject({ kind: "not_found", status: 404, attempts: 1 });
  expect(api.totalCalls()).toBe(1);
});

test("a create whose answer was lost is found by name instead of creating a second machine", async () => {
  let calls = 0;
  const lossy = clientThrough({
    // The first create reaches Fly, but its answer is replaced by a 502.
    fetch: async (input, init) => {
      const res = await fetch(input, init);
      if (init?.method === "POST" && String(input).endsWith("/machines") && calls++ === 0)
        return new Response(JSON.stringify({ error: "bad gateway" }), { status: 502 });
      return res;
    },
  });
  const machine = await lossy.createMachine({ name: "tcoder-lossy", region: "iad", config });
  const named = (await fly.listMachines()).filter((m) => m.name === "tcoder-lossy");
  expect(named.map((m) => m.id)).toEqual([machine.id]);
});

test("a retried create that Fly answers 409 already_exists adopts the machine its lost first try made", async () => {
  const posts: number[] = [];
  const lossy = clientThrough({
    // The first create reaches Fly but its answer is lost, and so is the lookup by name before the
    // retry: the retry's POST meets the name the first one took.
    fetch: async (input, init) => {
      const res = await fetch(input, init);
      const url = String(input);
      if (init?.method === "POST" && url.endsWith("/machines")) {
        posts.push(res.status);
        if (posts.length === 1) return new Response(JSON.stringify({ error: "bad gateway" }), { status: 502 });
      }
      if ((init?.method ?? "GET") === "GET" && url.endsWith("/machines") && posts.length === 1)
        return new Response(JSON.stringify({ error: "unavailable" }), { status: 503 });
      return res;
    },
  });
  const machine = await lossy.createMachine({ name: "tcoder-adopted", region: "iad", config });
  expect(posts).toEqual([200, 409]);
  const named = (await fly.listMachines()).filter((m) => m.name === "tcoder-adopted");
  expect(named.map((m) => m.id)).toEqual([machine.id]);
});

test("a 409 for a name no machine has any more is surfaced, not adopted", async () => {
  const conflicted = clientThrough({
    fetch: async () => new Response(JSON.stringify({ error: "already_exists: raced" }), { status: 409 }),
  });
  const err = await conflicted.createMachine({ name: "tcoder-nobody", region: "iad", config }).catch((e: unknown) => e);
  expect(err).toMatchObject({ kind: "conflict", status: 409 });
});

test("a call the Fly API never answers times out and is retried instead of hanging", async () => {
  let calls = 0;
  const stalled = clientThrough({
    requestTimeoutMs: 100,
    // The first call is accepted and then never answered.
    fetch: (input, init) => {
      if (calls++ > 0) return fetch(input, init);
      return new Promise((_, reject) => init?.signal?.addEventListener("abort", () => reject(init.signal?.reason)));
    },
  });
  await expect(stalled.listMachines()).resolves.toBeInstanceOf(Array);
  expect(calls).toBe(2);
});
