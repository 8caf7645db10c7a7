/**
 * The machine pool in Redis: one hash per Fly Machine (`keys.machine(id)`) plus the set of ids.
 *
 * Fields: `state` (machineStates), `flyState` (as Fly last reported it), `name`, `region`,
 * `createdAt`, `startedAt` (when we last created/started it), `lastJobFinishedAt` (the idle
 * clock: set only when the machine stops working on a job — completed/failed/released, lease
 * lost, told to abort — never by heartbeats or polls), `jobId` (current job), `lastError`,
 * `updatedAt`. Times are epoch ms.
 */
import { keys } from "./keys.ts";
import { asList, flatToRecord, type StateRedis } from "./script.ts";
import {
  machineCallFailedScript,
  markStoppingScript,
  readPoolScript,
  reconcilePoolScript,
  recordAdmissionErrorScript,
  registerMachineScript,
  releaseReservationScript,
  reserveMachinesScript,
} from "./scripts/pool.ts";

export const machineStates = ["starting", "idle", "busy", "stopping", "stopped"] as const;
export type MachineState = (typeof machineStates)[number];

/** Machine state names by name, for scripts' configs. */
export const machineStateNames = Object.fromEntries(machineStates.map((s) => [s, s])) as { [K in MachineState]: K };

/** How the pool reads a Fly machine state (the Fly client classifies; see fly/client.ts). */
export const machinePhases = ["gone", "stopped", "started", "transitioning"] as const;
export type MachinePhase = (typeof machinePhases)[number];

export interface PoolMachine {
  id: string;
  state: MachineState;
  flyState?: string;
  name?: string;
  region?: string;
  createdAt?: number;
  startedAt?: number;
  lastJobFinishedAt?: number;
  jobId?: string;
  lastError?: string;
  updatedAt?: number;
}

const num = (v: string | undefined) => (v === undefined ? undefined : Number(v));

function machineFromHash(flat: unknown): PoolMachine | null {
  const h = flatToRecord(flat);
  if (!h.id || !h.state) return null;
  const m: PoolMachine = {
    id: h.id,
    state: h.state as MachineState,
    flyState: h.flyState,
    name: h.name,
    region: h.region,
    createdAt: num(h.createdAt),
    startedAt: num(h.startedAt),
    lastJobFinishedAt: num(h.lastJobFinishedAt),
    jobId: h.jobId,
    lastError: h.lastError,
    updatedAt: num(h.updatedAt),
  };
  return Object.fromEntries(Object.entries(m).filter(([, v]) => v !== undefined)) as unknown as PoolMachine;
}

const base = (nowMs: number) => ({ now: String(nowMs), machinePrefix: keys.machinePrefix, m: machineStateNames });

export async function readPool(redis: StateRedis): Promise<PoolMachine[]> {
  const res = await readPoolScript.run<{ machines: unknown }>(redis, base(0));
  return asList<unknown>(res.machines)
    .map(machineFromHash)
    .filter((m): m is PoolMachine => m !== null);
}

export interface MachineReservation {
  /** Stopped pool machines now marked `starting`: the caller starts them through Fly. */
  start: string[];
  /** Reserved slots for new machines: the caller creates one per token, then registers or releases it. */
  create: string[];
  wanted: number;
  active: number;
  queued: number;
  running: number;
}

/**
 * Reserves what admission may bring up: wanted = min(cap, queued + running), minus machines
 * already up (anything not stopped) and slots other admitters hold. One script, so concurrent
 * callers together never exceed `cap`.
 */
export async function reserveMachines(
  redis: StateRedis,
  opts: { cap: number; nowMs: number; reservationTtlMs: number },
): Promise<MachineReservation> {
  const tokens = Array.from({ length: opts.cap }, () => crypto.randomUUID().replaceAll("-", "").slice(0, 20));
  const res = await reserveMachinesScript.run<{
    start: unknown;
    create: unknown;
    wanted: number;
    active: number;
    queued: number;
    running: number;
  }>(redis, {
    ...base(opts.nowMs),
    cap: String(opts.cap),
    tokens,
    reservationExpiresAt: String(opts.nowMs + opts.reservationTtlMs),
  });
  return {
    start: asList<string>(res.start).map(String),
    create: asList<string>(res.create).map(String),
    wanted: Number(res.wanted),
    active: Number(res.active),
    queued: Number(res.queued),
    running: Number(res.running),
  };
}

export async function registerCreatedMachine(
  redis: StateRedis,
  created: { token: string; machineId: string; name: string; region: string; flyState: string },
  nowMs: number,
): Promise<void> {
  await registerMachineScript.run(redis, {
    ...base(nowMs),
    token: created.token,
    machineId: created.machineId,
    machineKey: keys.machine(created.machineId),
    name: created.name,
    region: created.region,
    flyState: created.flyState,
  });
}

export async function releaseReservation(redis: StateRedis, token: string): Promise<void> {
  await releaseReservationScript.run(redis, { token });
}

/**
 * A Fly start or stop failed: the machine goes back to `stopped` (start; reusable later) or
 * `idle` (stop), or leaves the pool when Fly has no such machine.
 */
export async function machineCallFailed(
  redis: StateRedis,
  machineId: string,
  failure: { call: "start" | "stop"; gone: boolean; error: string },
  nowMs: number,
): Promise<void> {
  const m = machineStateNames;
  await machineCallFailedScript.run(redis, {
    ...base(nowMs),
    machineId,
    machineKey: keys.machine(machineId),
    gone: failure.gone,
    pendingState: failure.call === "start" ? m.starting : m.stopping,
    fallbackState: failure.call === "start" ? m.stopped : m.idle,
    error: failure.error.slice(0, 500),
  });
}

/** Marks the machine `stopping` if it has been idle for `idleMs`; true when the caller should stop it. */
export async function markMachineStopping(
  redis: StateRedis,
  machineId: string,
  idleMs: number,
  nowMs: number,
): Promise<boolean> {
  const res = await markStoppingScript.run<{ stopping: boolean }>(redis, {
    ...base(nowMs),
    machineKey: keys.machine(machineId),
    idleMs: String(idleMs),
  });
  return res.stopping === true;
}

export interface ObservedMachine {
  id: string;
  flyState: string;
  phase: MachinePhase;
  name?: string;
  region?: string;
}

export interface PoolReconciliation {
  removed: string[];
  stopped: string[];
  adopted: string[];
}

/** Brings the pool in line with what Fly lists (see reconcilePoolScript). */
export async function reconcilePool(
  redis: StateRedis,
  observed: ObservedMachine[],
  nowMs: number,
  graceMs: number,
): Promise<PoolReconciliation> {
  const res = await reconcilePoolScript.run<{ removed: unknown; stopped: unknown; adopted: unknown }>(redis, {
    ...base(nowMs),
    fly: observed,
    graceMs: String(graceMs),
    phase: Object.fromEntries(machinePhases.map((p) => [p, p])),
  });
  return {
    removed: asList<string>(res.removed).map(String),
    stopped: asList<string>(res.stopped).map(String),
    adopted: asList<string>(res.adopted).map(String),
  };
}

/** The last Fly failure admission hit, kept for stats after the log line scrolled away. */
export async function recordAdmissionError(
  redis: StateRedis,
  failure: { message: string; status: number },
  nowMs: number,
): Promise<void> {
  await recordAdmissionErrorScript.run(redis, {
    now: String(nowMs),
    error: failure.message.slice(0, 500),
    status: String(failure.status),
  });
}
