/**
 * A local Fly Machines API: the paths, JSON shapes, states and error answers of
 * https://api.machines.dev (as superfly/fly-go reads them), with machines run by a pluggable
 * runner. Clients written against it (the worker's Fly client, the Pulumi provider) should
 * need no change to talk to the real thing.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { constants as osConstants } from "node:os";
import { z } from "zod";
import {
  type FlyMachineConfig,
  type MachineExit,
  type MachineLaunch,
  type MachineRunner,
  noopRunner,
  type RunningMachine,
} from "./fly/runners.ts";

export * from "./fly/container-runner.ts";
export * from "./fly/runners.ts";

export const machineStates = [
  "created",
  "starting",
  "started",
  "stopping",
  "stopped",
  "destroying",
  "destroyed",
] as const;
export type MachineState = (typeof machineStates)[number];

/** `GET .../{id}/wait` accepts these target states. */
const waitableStates = ["started", "stopped", "destroyed"] as const;
/** Fly's proxy ends a wait after 60 s; the API caps `timeout` there. */
const maxWaitSeconds = 60;
/** Fly's defaults when neither the stop call nor `config.stop_config` says: SIGINT, 5 s to exit. */
const defaultStopSignal = "SIGINT";
const defaultStopGraceMs = 5_000;

export interface FlyMachineEvent {
  id: string;
  type: "launch" | "start" | "stop" | "exit" | "update" | "destroy";
  status: string;
  source: "user" | "flyd";
  timestamp: number;
  request?: Record<string, unknown>;
}

/** A machine as the API returns it (fly-go `Machine`). */
export interface FlyMachine {
  id: string;
  name: string;
  state: MachineState;
  region: string;
  instance_id: string;
  version: string;
  private_ip: string;
  config: FlyMachineConfig;
  image_ref: { registry: string; repository: string; tag: string; digest: string; labels: Record<string, string> };
  created_at: string;
  updated_at: string;
  events: FlyMachineEvent[];
  host_status: "ok";
  cordoned: false;
}

/** An app as the API returns it (fly-go `App`). */
export interface FlyApp {
  id: string;
  name: string;
  network: string;
  status: "pending" | "deployed";
  machine_count: number;
  volume_count: number;
  organization: { name: string; slug: string };
}

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

interface AppRecord {
  id: string;
  name: string;
  orgSlug: string;
  network: string;
  machines: Map<string, MachineRecord>;
}

interface MachineRecord {
  id: string;
  name: string;
  appName: string;
  region: string;
  state: MachineState;
  instanceId: string;
  privateIp: string;
  config: FlyMachineConfig;
  createdAt: string;
  updatedAt: string;
  events: FlyMachineEvent[];
  run: RunningMachine | undefined;
  /** Lifecycle work runs one step at a time per machine, in request order. */
  work: Promise<void>;
  /** Restarts the restart policy has made since the last requested start. */
  restarts: number;
}

class FlyError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly flyStatus?: string,
  ) {
    super(message);
  }
}

const machineConfigSchema = z.looseObject({
  image: z.string().min(1),
  env: z.record(z.string(), z.string()).optional(),
  guest: z
    .looseObject({
      cpu_kind: z.enum(["shared", "performance"]).optional(),
      cpus: z.number().int().positive().optional(),
      memory_mb: z.number().int().positive().optional(),
    })
    .optional(),
  restart: z
    .looseObject({
      policy: z.enum(["no", "always", "on-failure"]).optional(),
      max_retries: z.number().int().nonnegative().optional(),
    })
    .optional(),
  auto_destroy: z.boolean().optional(),
  metadata: z.record(z.string(), z.string()).optional(),
  stop_config: z
    .looseObject({ signal: z.string().optional(), timeout: z.union([z.string(), z.number()]).optional() })
    .optional(),
});

const launchMachineSchema = z.looseObject({
  name: z.string().min(1).optional(),
  region: z.string().min(1).optional(),
  config: machineConfigSchema,
  skip_launch: z.boolean().optional(),
});

const createAppSchema = z.looseObject({
  app_name: z.string().optional(),
  name: z.string().optional(),
  org_slug: z.string().min(1),
  network: z.string().optional(),
});

const stopMachineSchema = z.looseObject({
  signal: z
    .string()
    .regex(/^SIG[A-Z0-9]+$/)
    .optional(),
  timeout: z.union([z.string(), z.number()]).optional(),
});

const appNamePattern = /^[a-z0-9][a-z0-9-]{0,61}[a-z0-9]$/;

/** Fly durations come as Go strings ("10s", "500ms", "1m"); a bare number is seconds. */
function parseDurationMs(value: string | number | undefined, fallbackMs: number): number {
  if (value === undefined) return fallbackMs;
  if (typeof value === "number") return value * 1000;
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(value.trim());
  if (!match?.[1]) throw new FlyError(400, `invalid duration "${value}"`);
  const units = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;
  return Number(match[1]) * units[(match[2] ?? "s") as keyof typeof units];
}

function parseImageRef(image: string): FlyMachine["image_ref"] {
  const [withoutDigest = "", digest = ""] = image.split("@");
  const slash = withoutDigest.indexOf("/");
  const hasRegistry = slash > 0 && /[.:]|^localhost$/.test(withoutDigest.slice(0, slash));
  const registry = hasRegistry ? withoutDigest.slice(0, slash) : "";
  const rest = hasRegistry ? withoutDigest.slice(slash + 1) : withoutDigest;
  const colon = rest.lastIndexOf(":");
  const repository = colon > 0 ? rest.slice(0, colon) : rest;
  const tag = colon > 0 ? rest.slice(colon + 1) : digest ? "" : "latest";
  return { registry, repository, tag, digest, labels: {} };
}

/**
 * How Fly reports a program's end (fly-go `MachineExitEvent`): `exit_code` as a shell shows it
 * (128 + n after signal n), the guest's own code or signal, and whether the OOM killer struck.
 */
function exitEvent(exit: MachineExit, how: { requestedStop: boolean; restarting: boolean }) {
  const signalNumber = exit.signal ? (osConstants.signals[exit.signal as NodeJS.Signals] ?? 0) : 0;
  return {
    exit_code: exit.code ?? 128 + signalNumber,
    guest_exit_code: exit.code ?? 0,
    guest_signal: exit.signal ? signalNumber : -1,
    oom_killed: exit.oomKilled ?? false,
    requested_stop: how.requestedStop,
    restarting: how.restarting,
    signal: -1,
    exited_at: new Date().toISOString(),
  };
}

/** Fly machine ids are 14 hex digits; instance ids are ULID-like. */
const newMachineId = () => randomBytes(7).toString("hex");
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
function newInstanceId(): string {
  const bytes = randomBytes(16);
  let time = Date.now();
  let head = "";
  for (let i = 0; i < 10; i++) {
    head = crockford[time % 32] + head;
    time = Math.floor(time / 32);
  }
  let tail = "";
  for (let i = 0; i < 16; i++) tail += crockford[(bytes[i] ?? 0) % 32];
  return head + tail;
}

export async function startFlyApi(opts: StartFlyApiOptions): Promise<LocalFlyApi> {
  const runner = opts.runner ?? noopRunner();
  const random = opts.random ?? Math.random;
  let faults = opts.faults;
  const apps = new Map<string, AppRecord>();
  const callCounts = new Map<string, number>();
  const pendingWaits = new Set<() => void>();
  const stateListeners = new Set<(m: MachineRecord) => void>();
  let nextPrivateIp = 2;

  const nowIso = () => new Date().toISOString();

  function record(m: MachineRecord, event: Omit<FlyMachineEvent, "id" | "timestamp">) {
    m.events.unshift({ id: newInstanceId(), timestamp: Date.now(), ...event });
    m.events.length = Math.min(m.events.length, 20);
  }

  function setState(m: MachineRecord, state: MachineState) {
    m.state = state;
    m.updatedAt = nowIso();
    for (const listener of stateListeners) listener(m);
  }

  function present(m: MachineRecord): FlyMachine {
    return {
      id: m.id,
      name: m.name,
      state: m.state,
      region: m.region,
      instance_id: m.instanceId,
      version: m.instanceId,
      private_ip: m.privateIp,
      config: m.config,
      image_ref: parseImageRef(m.config.image),
      created_at: m.createdAt,
      updated_at: m.updatedAt,
      events: m.events.map((e) => ({ ...e })),
      host_status: "ok",
      cordoned: false,
    };
  }

  function presentApp(app: AppRecord): FlyApp {
    const live = [...app.machines.values()].filter((m) => m.state !== "destroyed");
    return {
      id: app.id,
      name: app.name,
      network: app.network,
      status: live.length > 0 ? "deployed" : "pending",
      machine_count: live.length,
      volume_count: 0,
      organization: { name: app.orgSlug, slug: app.orgSlug },
    };
  }

  function enqueue(m: MachineRecord, step: () => Promise<void>) {
    m.work = m.work.then(step).catch((err) => {
      console.error(`[fly-api] machine ${m.id}:`, err);
    });
  }

  /** created/stopped → starting → started (the runner's program is up). */
  function launch(m: MachineRecord, source: FlyMachineEvent["source"]) {
    setState(m, "starting");
    record(m, { type: "start", status: "requested", source });
    enqueue(m, async () => {
      if (m.state !== "starting") return;
      const launchInfo: MachineLaunch = {
        id: m.id,
        appName: m.appName,
        region: m.region,
        instanceId: m.instanceId,
        privateIp: m.privateIp,
        config: m.config,
      };
      let run: RunningMachine;
      try {
        run = await runner.start(launchInfo);
      } catch (err) {
        record(m, { type: "exit", status: "failed", source: "flyd", request: { error: String(err) } });
        if (m.state === "starting") setState(m, "stopped");
        return;
      }
      // A stop or destroy queued behind this step takes the program down from here.
      m.run = run;
      void run.exited.then((exit) => onExit(m, run, exit));
      if (m.state === "starting") {
        record(m, { type: "start", status: "started", source: "flyd" });
        setState(m, "started");
      }
    });
  }

  /** The program ended without being asked: restart policy, then stopped (or destroyed). */
  function onExit(m: MachineRecord, run: RunningMachine, exit: MachineExit) {
    if (m.run !== run) return;
    m.run = undefined;
    const policy = m.config.restart?.policy ?? "on-failure";
    const failed = exit.code !== 0;
    const retriesLeft = m.restarts < (m.config.restart?.max_retries ?? 3);
    const restarting =
      m.state === "started" && (policy === "always" || (policy === "on-failure" && failed && retriesLeft));
    record(m, {
      type: "exit",
      status: "stopped",
      source: "flyd",
      request: { exit_event: exitEvent(exit, { requestedStop: false, restarting }) },
    });
    if (m.state !== "started") return;
    if (restarting) {
      m.restarts++;
      launch(m, "flyd");
      return;
    }
    settleStopped(m);
  }

  function settleStopped(m: MachineRecord) {
    setState(m, "stopped");
    if (m.config.auto_destroy) {
      setState(m, "destroying");
      record(m, { type: "destroy", status: "destroyed", source: "flyd" });
      setState(m, "destroyed");
    }
  }

  function stopMachine(m: MachineRecord, signal: string, graceMs: number) {
    setState(m, "stopping");
    record(m, { type: "stop", status: "requested", source: "user", request: { signal } });
    enqueue(m, async () => {
      const run = m.run;
      m.run = undefined;
      if (run) {
        await run.stop(signal, graceMs);
        const exit = await run.exited;
        record(m, {
          type: "exit",
          status: "stopped",
          source: "flyd",
          request: { exit_event: exitEvent(exit, { requestedStop: true, restarting: false }) },
        });
      }
      if (m.state === "stopping") {
        record(m, { type: "stop", status: "stopped", source: "flyd" });
        settleStopped(m);
      }
    });
  }

  function destroyMachine(m: MachineRecord) {
    setState(m, "destroying");
    record(m, { type: "destroy", status: "requested", source: "user" });
    enqueue(m, async () => {
      const run = m.run;
      m.run = undefined;
      if (run) await run.stop("SIGKILL", 0);
      setState(m, "destroyed");
    });
  }

  function requireApp(name: string): AppRecord {
    const app = apps.get(name);
    if (!app) throw new FlyError(404, "app not found");
    return app;
  }

  function requireMachine(appName: string, id: string): MachineRecord {
    const m = requireApp(appName).machines.get(id);
    if (!m) throw new FlyError(404, "machine not found");
    return m;
  }

  function parse<T>(schema: z.ZodType<T>, body: unknown): T {
    const result = schema.safeParse(body);
    if (!result.success) {
      const issue = result.error.issues[0];
      throw new FlyError(
        400,
        `invalid request body: ${issue?.path.join(".") || "body"}: ${issue?.message ?? "invalid"}`,
      );
    }
    return result.data;
  }

  function waitForState(
    m: MachineRecord,
    states: readonly string[],
    timeoutMs: number,
    res: ServerResponse,
  ): Promise<boolean> {
    if (states.includes(m.state)) return Promise.resolve(true);
    return new Promise((resolve) => {
      const finish = (reached: boolean) => {
        clearTimeout(timer);
        stateListeners.delete(listener);
        pendingWaits.delete(abandon);
        res.off("close", abandon);
        resolve(reached);
      };
      const listener = (changed: MachineRecord) => {
        if (changed === m && states.includes(m.state)) finish(true);
      };
      const abandon = () => finish(false);
      const timer = setTimeout(abandon, timeoutMs);
      stateListeners.add(listener);
      pendingWaits.add(abandon);
      res.on("close", abandon);
    });
  }

  type Answer = { status: number; body?: unknown };

  async function route(method: string, url: URL, body: unknown, res: ServerResponse): Promise<Answer> {
    const parts = url.pathname.split("/").filter(Boolean).map(decodeURIComponent);
    if (parts[0] !== "v1" || parts[1] !== "apps") throw new FlyError(404, "not found");
    const [, , appName, machinesPart, machineId, action, ...extra] = parts;
    if (extra.length > 0) throw new FlyError(404, "not found");

    if (appName === undefined) {
      if (method === "GET") {
        const org = url.searchParams.get("org_slug");
        const listed = [...apps.values()].filter((a) => !org || a.orgSlug === org).map(presentApp);
        return { status: 200, body: { total_apps: listed.length, apps: listed } };
      }
      if (method === "POST") {
        const input = parse(createAppSchema, body);
        const name = input.app_name ?? input.name ?? "";
        if (!appNamePattern.test(name)) {
          throw new FlyError(400, "app_name must be 2-63 lowercase letters, digits or dashes");
        }
        if (apps.has(name)) throw new FlyError(422, `Name '${name}' has already been taken`, "name_taken");
        const app: AppRecord = {
          id: randomUUID(),
          name,
          orgSlug: input.org_slug,
          network: input.network || "default",
          machines: new Map(),
        };
        apps.set(name, app);
        return { status: 201, body: presentApp(app) };
      }
      throw new FlyError(405, "method not allowed");
    }

    if (machinesPart === undefined) {
      const app = requireApp(appName);
      if (method === "GET") return { status: 200, body: presentApp(app) };
      if (method === "DELETE") {
        for (const m of app.machines.values()) {
          if (m.state !== "destroyed" && m.state !== "destroying") destroyMachine(m);
        }
        await Promise.all([...app.machines.values()].map((m) => m.work));
        apps.delete(appName);
        return { status: 202 };
      }
      throw new FlyError(405, "method not allowed");
    }
    if (machinesPart !== "machines") throw new FlyError(404, "not found");

    if (machineId === undefined) {
      const app = requireApp(appName);
      if (method === "GET") {
        const includeDeleted = url.searchParams.get("include_deleted") === "true";
        const stateFilter = url.searchParams
          .getAll("state")
          .flatMap((s) => s.split(","))
          .filter(Boolean);
        const listed = [...app.machines.values()]
          .filter((m) => includeDeleted || m.state !== "destroyed")
          .filter((m) => stateFilter.length === 0 || stateFilter.includes(m.state))
          .map(present);
        return { status: 200, body: listed };
      }
      if (method === "POST") {
        const input = parse(launchMachineSchema, body);
        const id = newMachineId();
        const m: MachineRecord = {
          id,
          name: input.name ?? `${app.name}-${id.slice(0, 6)}`,
          appName: app.name,
          region: input.region ?? "iad",
          state: "created",
          instanceId: newInstanceId(),
          privateIp: `fdaa:0:1:a7b:${(nextPrivateIp++).toString(16)}::2`,
          config: input.config as FlyMachineConfig,
          createdAt: nowIso(),
          updatedAt: nowIso(),
          events: [],
          run: undefined,
          work: Promise.resolve(),
          restarts: 0,
        };
        record(m, { type: "launch", status: "created", source: "user" });
        app.machines.set(id, m);
        // Fly answers with the machine as created; it then boots unless told not to.
        const created = present(m);
        if (!input.skip_launch) launch(m, "user");
        return { status: 200, body: created };
      }
      throw new FlyError(405, "method not allowed");
    }

    const m = requireMachine(appName, machineId);

    if (action === undefined) {
      if (method === "GET") return { status: 200, body: present(m) };
      if (method === "POST") {
        if (m.state === "destroyed" || m.state === "destroying") {
          throw new FlyError(412, `unable to update machine from current state: '${m.state}'`);
        }
        const input = parse(launchMachineSchema, body);
        const wasRunning = m.state === "started" || m.state === "starting";
        m.config = input.config as FlyMachineConfig;
        if (input.name) m.name = input.name;
        m.instanceId = newInstanceId();
        record(m, { type: "update", status: "completed", source: "user" });
        if (wasRunning) stopMachine(m, m.config.stop_config?.signal ?? defaultStopSignal, stopGraceMs(m));
        if (wasRunning || !input.skip_launch) {
          m.restarts = 0;
          launch(m, "user");
        } else {
          m.updatedAt = nowIso();
        }
        return { status: 200, body: present(m) };
      }
      if (method === "DELETE") {
        if (m.state === "destroyed" || m.state === "destroying") throw new FlyError(404, "machine not found");
        const force = url.searchParams.get("force") === "true" || url.searchParams.get("kill") === "true";
        if (!force && (m.state === "started" || m.state === "starting" || m.state === "stopping")) {
          throw new FlyError(
            412,
            `failed_precondition: unable to destroy machine, not currently stopped or suspended (state: '${m.state}')`,
          );
        }
        destroyMachine(m);
        return { status: 200, body: { ok: true } };
      }
      throw new FlyError(405, "method not allowed");
    }

    if (action === "start" && method === "POST") {
      const previous = m.state;
      if (previous === "started" || previous === "starting") {
        return { status: 200, body: { previous_state: previous } };
      }
      if (previous !== "stopped" && previous !== "created") {
        throw new FlyError(412, `unable to start machine from current state: '${previous}'`);
      }
      m.restarts = 0;
      launch(m, "user");
      return { status: 200, body: { previous_state: previous } };
    }

    if (action === "stop" && method === "POST") {
      const input = parse(stopMachineSchema, body ?? {});
      if (m.state === "destroyed" || m.state === "destroying") {
        throw new FlyError(412, `unable to stop machine from current state: '${m.state}'`);
      }
      if (m.state === "started" || m.state === "starting") {
        const signal = input.signal ?? m.config.stop_config?.signal ?? defaultStopSignal;
        stopMachine(m, signal, parseDurationMs(input.timeout, stopGraceMs(m)));
      }
      return { status: 200, body: { ok: true } };
    }

    if (action === "wait" && method === "GET") {
      const states = url.searchParams
        .getAll("state")
        .flatMap((s) => s.split(","))
        .filter(Boolean);
      if (states.length === 0) states.push("started");
      const unknown = states.find((s) => !(waitableStates as readonly string[]).includes(s));
      if (unknown) throw new FlyError(400, `invalid state "${unknown}"`);
      const instanceId = url.searchParams.get("instance_id");
      if (states.includes("stopped") && !instanceId) {
        throw new FlyError(400, "instance_id must be specified when waiting for a machine to stop");
      }
      const timeoutParam = url.searchParams.get("timeout");
      const timeoutSeconds = timeoutParam === null ? maxWaitSeconds : Number(timeoutParam);
      if (!Number.isFinite(timeoutSeconds) || timeoutSeconds < 0) throw new FlyError(400, "invalid timeout");
      const reached = await waitForState(m, states, Math.min(timeoutSeconds, maxWaitSeconds) * 1000, res);
      if (!reached) {
        throw new FlyError(408, `deadline_exceeded: machine did not reach state ${states.join("|")} in time`);
      }
      return { status: 200, body: { ok: true } };
    }

    throw new FlyError(404, "not found");
  }

  function stopGraceMs(m: MachineRecord): number {
    return parseDurationMs(m.config.stop_config?.timeout, defaultStopGraceMs);
  }

  function endpointKey(method: string, pathname: string): string {
    const parts = pathname.split("/").filter(Boolean);
    const names = ["v1", "apps", "{app}", "machines", "{id}"];
    return `${method} /${parts.map((p, i) => (i === 2 || i === 4 ? names[i] : p)).join("/")}`;
  }

  async function readBody(req: IncomingMessage): Promise<unknown> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const text = Buffer.concat(chunks).toString("utf8").trim();
    if (text === "") return undefined;
    try {
      return JSON.parse(text);
    } catch {
      throw new FlyError(400, "invalid JSON body");
    }
  }

  function send(res: ServerResponse, answer: Answer, headers: Record<string, string> = {}) {
    if (res.headersSent || res.destroyed) return;
    if (answer.body === undefined) {
      res.writeHead(answer.status, headers).end();
      return;
    }
    res.writeHead(answer.status, { "content-type": "application/json", ...headers }).end(JSON.stringify(answer.body));
  }

  const server = createServer(async (req, res) => {
    const method = req.method ?? "GET";
    const url = new URL(req.url ?? "/", "http://localhost");
    const key = endpointKey(method, url.pathname);
    callCounts.set(key, (callCounts.get(key) ?? 0) + 1);
    try {
      if (faults && faults.rate > 0 && random() < faults.rate) {
        if (faults.delayMs) await new Promise((r) => setTimeout(r, faults?.delayMs));
        const statuses = faults.statuses ?? (faults.delayMs ? [] : [429, 500]);
        if (statuses.length > 0) {
          const status = statuses[Math.floor(random() * statuses.length)] ?? 500;
          req.resume();
          const error = status === 429 ? "rate limit exceeded" : "injected fault";
          send(res, { status, body: { error } }, status === 429 ? { "retry-after": "1" } : {});
          return;
        }
      }
      const auth = req.headers.authorization ?? "";
      const presented = /^(?:Bearer|FlyV1)\s+(.+)$/i.exec(auth)?.[1];
      if (presented !== opts.token) {
        req.resume();
        throw new FlyError(401, "unauthorized");
      }
      const body = await readBody(req);
      send(res, await route(method, url, body, res));
    } catch (err) {
      if (err instanceof FlyError) {
        send(res, {
          status: err.status,
          body: { error: err.message, ...(err.flyStatus ? { status: err.flyStatus } : {}) },
        });
        return;
      }
      console.error("[fly-api]", err);
      send(res, { status: 500, body: { error: "internal error" } });
    }
  });

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
    machines: (appName) => [...(apps.get(appName)?.machines.values() ?? [])].map(present),
    setFaults: (next) => {
      faults = next;
    },
    async stop() {
      for (const abandon of [...pendingWaits]) abandon();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      const all = [...apps.values()].flatMap((a) => [...a.machines.values()]);
      for (const m of all) {
        if (m.state !== "destroyed" && m.state !== "destroying" && m.state !== "stopped" && m.state !== "created") {
          stopMachine(m, "SIGTERM", 1_000);
        }
      }
      await Promise.all(all.map((m) => m.work));
    },
  };
}
