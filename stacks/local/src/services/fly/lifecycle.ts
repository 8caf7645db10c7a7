/**
 * A local Fly Machine's lifecycle: its states (fly-go `MachineState*`), the events it records,
 * the restart policy, and waits for a state. Lifecycle steps of one machine run one at a time in
 * request order; the runner only starts and stops the program behind it.
 */
import { randomBytes } from "node:crypto";
import { constants as osConstants } from "node:os";
import type { FlyMachineConfig, MachineExit, MachineRunner, RunningMachine } from "./runners.ts";
import { parseDurationMs } from "./schemas.ts";

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

/** Fly's defaults when neither the stop call nor `config.stop_config` says: SIGINT, 5 s to exit. */
export const defaultStopSignal = "SIGINT";
const defaultStopGraceMs = 5_000;
/** Fly keeps a machine's recent events; older ones drop off. */
const eventsKept = 20;

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

export interface MachineRecord {
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

/** Fly machine ids are 14 hex digits; instance ids are ULID-like. */
export const newMachineId = () => randomBytes(7).toString("hex");
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
export function newInstanceId(): string {
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

export const isGone = (m: MachineRecord) => m.state === "destroyed" || m.state === "destroying";
export const isRunning = (m: MachineRecord) => m.state === "started" || m.state === "starting";

export function present(m: MachineRecord): FlyMachine {
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

/** The grace a stop gives the program: the call's own timeout, else `stop_config`, else Fly's 5 s. */
export const stopGraceMs = (m: MachineRecord, timeout?: string | number) =>
  parseDurationMs(timeout ?? m.config.stop_config?.timeout, defaultStopGraceMs);

export type MachineLifecycle = ReturnType<typeof machineLifecycle>;

export function machineLifecycle(runner: MachineRunner) {
  const stateListeners = new Set<(m: MachineRecord) => void>();
  const pendingWaits = new Set<() => void>();
  const nowIso = () => new Date().toISOString();

  function record(m: MachineRecord, event: Omit<FlyMachineEvent, "id" | "timestamp">) {
    m.events.unshift({ id: newInstanceId(), timestamp: Date.now(), ...event });
    m.events.length = Math.min(m.events.length, eventsKept);
  }

  function setState(m: MachineRecord, state: MachineState) {
    m.state = state;
    m.updatedAt = nowIso();
    for (const listener of stateListeners) listener(m);
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
      let run: RunningMachine;
      try {
        run = await runner.start({
          id: m.id,
          appName: m.appName,
          region: m.region,
          instanceId: m.instanceId,
          privateIp: m.privateIp,
          config: m.config,
        });
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

  /** started/starting → stopping → stopped: `signal` first, SIGKILL once `graceMs` has passed. */
  function stop(m: MachineRecord, signal: string, graceMs: number) {
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

  function destroy(m: MachineRecord) {
    setState(m, "destroying");
    record(m, { type: "destroy", status: "requested", source: "user" });
    enqueue(m, async () => {
      const run = m.run;
      m.run = undefined;
      if (run) await run.stop("SIGKILL", 0);
      setState(m, "destroyed");
    });
  }

  /** Resolves true once `m` is in one of `states`, false at the timeout or when `signal` aborts. */
  function waitFor(m: MachineRecord, states: readonly string[], timeoutMs: number, signal?: AbortSignal) {
    if (states.includes(m.state)) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      const finish = (reached: boolean) => {
        clearTimeout(timer);
        stateListeners.delete(listener);
        pendingWaits.delete(abandon);
        signal?.removeEventListener("abort", abandon);
        resolve(reached);
      };
      const listener = (changed: MachineRecord) => {
        if (changed === m && states.includes(m.state)) finish(true);
      };
      const abandon = () => finish(false);
      const timer = setTimeout(abandon, timeoutMs);
      stateListeners.add(listener);
      pendingWaits.add(abandon);
      signal?.addEventListener("abort", abandon);
    });
  }

  return {
    record,
    launch,
    stop,
    destroy,
    waitFor,
    /** Ends every wait still open (as timed out), so a server can close. */
    abandonWaits() {
      for (const abandon of [...pendingWaits]) abandon();
    },
    touch(m: MachineRecord) {
      m.updatedAt = nowIso();
    },
  };
}
