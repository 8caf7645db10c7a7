/**
 * A local Fly Machines API: the paths, JSON shapes, states and error answers of
 * https://api.machines.dev (as superfly/fly-go reads them), with machines run by a pluggable
 * runner. Clients written against it (the worker's Fly client, the Pulumi provider, fly-admin)
 * should need no change to talk to the real thing. One Hono app: call counting, fault injection
 * and the bearer token first, then one line per route; what each route does is in
 * `fly/handlers.ts`, the machine lifecycle in `fly/lifecycle.ts`.
 */
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { createAdaptorServer } from "@hono/node-server";
import { type Context, Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import { flyHandlers } from "./fly/handlers.ts";
import { type FlyMachine, machineLifecycle } from "./fly/lifecycle.ts";
import { type MachineRunner, noopRunner } from "./fly/runners.ts";
import { FlyError } from "./fly/schemas.ts";

export * from "./fly/container-runner.ts";
export type { FlyApp } from "./fly/handlers.ts";
export { type FlyMachine, type FlyMachineEvent, type MachineState, machineStates } from "./fly/lifecycle.ts";
export * from "./fly/runners.ts";

export interface FlyApiFaults {
  /** Fraction of calls (0..1) that get a fault instead of (or before) their answer. */
  rate: number;
  /** Statuses a faulted call answers with; default [429, 500] unless only `delayMs` is given. */
  statuses?: number[];
  /** A faulted call waits this long first (then answers normally when `statuses` is empty). */
  delayMs?: number;
}

export interface StartFlyApiOptions {
  port?: number;
  token: string;
  runner?: MachineRunner;
  faults?: FlyApiFaults;
  /** Source of randomness for fault injection (tests make it deterministic). */
  random?: () => number;
}

export interface LocalFlyApi {
  /** Base URL to use as FLY_API_BASE_URL (paths start with /v1). */
  url: string;
  token: string;
  /** Calls per endpoint, keyed like `POST /v1/apps/{app}/machines/{id}/start`. */
  calls(): Record<string, number>;
  totalCalls(): number;
  resetCalls(): void;
  /** Machines of an app as GET would show them (destroyed ones included). */
  machines(appName: string): FlyMachine[];
  setFaults(faults: FlyApiFaults | undefined): void;
  stop(): Promise<void>;
}

/** `POST /v1/apps/tcoder/machines/0123/start` counts as `POST /v1/apps/{app}/machines/{id}/start`. */
function endpointKey(method: string, pathname: string): string {
  const names = ["v1", "apps", "{app}", "machines", "{id}"];
  const parts = pathname.split("/").filter(Boolean);
  return `${method} /${parts.map((p, i) => (i === 2 || i === 4 ? names[i] : p)).join("/")}`;
}

/** The request's JSON body; an empty body is `undefined` (stop and start may send none). */
async function jsonBody(c: Context): Promise<unknown> {
  const text = (await c.req.text()).trim();
  if (text === "") return undefined;
  try {
    return JSON.parse(text);
  } catch {
    throw new FlyError(400, "invalid JSON body");
  }
}

export async function startFlyApi(opts: StartFlyApiOptions): Promise<LocalFlyApi> {
  const random = opts.random ?? Math.random;
  let faults = opts.faults;
  const callCounts = new Map<string, number>();
  const lifecycle = machineLifecycle(opts.runner ?? noopRunner());
  const fly = flyHandlers(lifecycle);

  const app = new Hono();
  app.use(async (c, next) => {
    const key = endpointKey(c.req.method, c.req.path);
    callCounts.set(key, (callCounts.get(key) ?? 0) + 1);
    await next();
  });
  // Injected faults come before anything else answers, as a flaky proxy in front of Fly would.
  app.use(async (c, next) => {
    if (!faults || faults.rate <= 0 || random() >= faults.rate) return next();
    const { delayMs, statuses = delayMs ? [] : [429, 500] } = faults;
    if (delayMs) await new Promise((resolve) => setTimeout(resolve, delayMs));
    if (statuses.length === 0) return next();
    const status = statuses[Math.floor(random() * statuses.length)] ?? 500;
    if (status === 429) return c.json({ error: "rate limit exceeded" }, 429, { "retry-after": "1" });
    return c.json({ error: "injected fault" }, status as 500);
  });
  app.use(async (c, next) => {
    const presented = /^(?:Bearer|FlyV1)\s+(.+)$/i.exec(c.req.header("authorization") ?? "")?.[1];
    if (presented !== opts.token) throw new FlyError(401, "unauthorized");
    await next();
  });

  const appName = (c: Context) => c.req.param("app") ?? "";
  const machineId = (c: Context) => c.req.param("id") ?? "";
  app.get("/v1/apps", (c) => c.json(fly.listApps(c.req.queries())));
  app.post("/v1/apps", async (c) => c.json(fly.createApp(await jsonBody(c)), 201));
  app.get("/v1/apps/:app", (c) => c.json(fly.getApp(appName(c))));
  app.delete("/v1/apps/:app", async (c) => c.body(await fly.deleteApp(appName(c)).then(() => null), 202));
  app.get("/v1/apps/:app/machines", (c) => c.json(fly.listMachines(appName(c), c.req.queries())));
  app.post("/v1/apps/:app/machines", async (c) => c.json(fly.createMachine(appName(c), await jsonBody(c))));
  app.get("/v1/apps/:app/machines/:id", (c) => c.json(fly.getMachine(appName(c), machineId(c))));
  app.post("/v1/apps/:app/machines/:id", async (c) =>
    c.json(fly.updateMachine(appName(c), machineId(c), await jsonBody(c))),
  );
  app.delete("/v1/apps/:app/machines/:id", (c) => c.json(fly.deleteMachine(appName(c), machineId(c), c.req.queries())));
  app.post("/v1/apps/:app/machines/:id/start", (c) => c.json(fly.startMachine(appName(c), machineId(c))));
  app.post("/v1/apps/:app/machines/:id/stop", async (c) =>
    c.json(fly.stopMachine(appName(c), machineId(c), await jsonBody(c))),
  );
  app.get("/v1/apps/:app/machines/:id/wait", async (c) =>
    c.json(await fly.waitMachine(appName(c), machineId(c), c.req.queries(), c.req.raw.signal)),
  );

  app.notFound((c) => c.json({ error: "not found" }, 404));
  app.onError((err, c) => {
    if (err instanceof FlyError) {
      return c.json({ error: err.message, ...(err.flyStatus ? { status: err.flyStatus } : {}) }, err.status);
    }
    if (err instanceof HTTPException) return c.json({ error: err.message }, err.status);
    console.error("[fly-api]", err);
    return c.json({ error: "internal error" }, 500);
  });

  // The adaptor's server is node:http's (no https/http2 options are given).
  const server = createAdaptorServer({ fetch: app.fetch }) as Server;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 0, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    token: opts.token,
    calls: () => Object.fromEntries(callCounts),
    totalCalls: () => [...callCounts.values()].reduce((a, b) => a + b, 0),
    resetCalls: () => callCounts.clear(),
    machines: (name) => fly.machinesOf(name),
    setFaults: (next) => {
      faults = next;
    },
    async stop() {
      lifecycle.abandonWaits();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await fly.shutdown();
    },
  };
}
