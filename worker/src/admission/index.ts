/**
 * Admission control: bring up as many machines as queued + running work needs, never more than
 * MAX_MACHINES. Slots are reserved in Redis (one Lua script) before any Fly call, so concurrent
 * admissions cannot overshoot the cap; a failed Fly call gives its slot back. Stopped pool
 * machines are started before new ones are created.
 */
import type { Settings } from "../bindings.ts";
import { FlyApiError, type FlyClient, machineConfigFor } from "../fly/client.ts";
import { log } from "../http/logging.ts";
import {
  machineCallFailed,
  recordAdmissionError,
  registerCreatedMachine,
  releaseReservation,
  reserveMachines,
  type StateRedis,
} from "../state/index.ts";

/** A reservation outlives an admitter that died mid-call by at most this long. */
const RESERVATION_TTL_MS = 120_000;

export type LogSource = "api" | "queue" | "cron";

export interface AdmissionResult {
  wanted: number;
  active: number;
  started: string[];
  created: string[];
  failures: { machineId?: string; kind: string; status: number; message: string }[];
}

const describe = (err: unknown) =>
  err instanceof FlyApiError
    ? { kind: err.kind, status: err.status, message: err.message }
    : { kind: "internal", status: 0, message: err instanceof Error ? err.message : String(err) };

export async function admitMachines(
  settings: Settings,
  redis: StateRedis,
  fly: FlyClient,
  nowMs: number,
  source: LogSource = "api",
): Promise<AdmissionResult> {
  const result: AdmissionResult = { wanted: 0, active: 0, started: [], created: [], failures: [] };
  const say = (level: "info" | "warn" | "error", fields: Record<string, unknown>) =>
    log(settings.LOG_LEVEL, level, source, fields);

  let reservation: Awaited<ReturnType<typeof reserveMachines>>;
  try {
    reservation = await reserveMachines(redis, {
      cap: settings.MAX_MACHINES,
      nowMs,
      reservationTtlMs: RESERVATION_TTL_MS,
    });
  } catch (err) {
    say("error", { event: "admission_reserve_failed", ...describe(err) });
    result.failures.push(describe(err));
    return result;
  }
  result.wanted = reservation.wanted;
  result.active = reservation.active;
  if (reservation.start.length === 0 && reservation.create.length === 0) return result;

  const startOne = async (machineId: string) => {
    try {
      await fly.startMachine(machineId);
      result.started.push(machineId);
      say("info", { event: "machine_started", machineId });
    } catch (err) {
      const failure = describe(err);
      result.failures.push({ machineId, ...failure });
      say("warn", { event: "machine_start_failed", machineId, ...failure });
      await machineCallFailed(
        redis,
        machineId,
        { call: "start", gone: err instanceof FlyApiError && err.kind === "not_found", error: failure.message },
        nowMs,
      ).catch((e: unknown) => say("error", { event: "pool_update_failed", machineId, ...describe(e) }));
    }
  };

  const createOne = async (token: string) => {
    const name = `tcoder-${token}`;
    try {
      const machine = await fly.createMachine({
        name,
        region: settings.FLY_REGION,
        config: machineConfigFor(settings),
      });
      await registerCreatedMachine(
        redis,
        { token, machineId: machine.id, name, region: machine.region ?? settings.FLY_REGION, flyState: machine.state },
        nowMs,
      );
      result.created.push(machine.id);
      say("info", { event: "machine_created", machineId: machine.id, name });
    } catch (err) {
      const failure = describe(err);
      result.failures.push(failure);
      say("warn", { event: "machine_create_failed", name, ...failure });
      // The slot goes back; if the machine exists after all, cron reconciliation adopts it.
      await releaseReservation(redis, token).catch((e: unknown) =>
        say("error", { event: "reservation_release_failed", ...describe(e) }),
      );
    }
  };

  await Promise.all([...reservation.start.map(startOne), ...reservation.create.map(createOne)]);
  const lastFailure = result.failures.at(-1);
  if (lastFailure)
    await recordAdmissionError(redis, lastFailure, nowMs).catch((e: unknown) =>
      say("error", { event: "pool_update_failed", ...describe(e) }),
    );
  say("info", {
    event: "admission",
    wanted: reservation.wanted,
    active: reservation.active,
    queued: reservation.queued,
    running: reservation.running,
    started: result.started.length,
    created: result.created.length,
    failed: result.failures.length,
  });
  return result;
}
