/**
 * The minute cron: reconcile the pool with Fly, stop machines idle since their last finished
 * job, recover expired leases, expire uploads that never arrived, remove the objects of deleted
 * jobs still due a purge, then admit machines for whatever is queued. Each step runs even if an
 * earlier one failed; failures are logged.
 */

import { admitMachines } from "../admission/index.ts";
import { type Env, parseSettings } from "../bindings.ts";
import { enqueueCallback } from "../callbacks/index.ts";
import { purgeDueJobs } from "../deletion/purge.ts";
import { createFlyClient, FlyApiError, type FlyClient, machinePhase } from "../fly/client.ts";
import { redisFromSettings } from "../http/context.ts";
import { log } from "../http/logging.ts";
import {
  expireStaleUploads,
  machineCallFailed,
  machineStateNames,
  markMachineStopping,
  readPool,
  reconcilePool,
  recoverExpiredLeases,
  type StateRedis,
  type StoredJob,
} from "../state/index.ts";

/** A machine created or started this recently may not show in Fly's list as such yet. */
const RECONCILE_GRACE_MS = 60_000;

export interface ScheduledDeps {
  redis?: StateRedis;
  fly?: FlyClient;
}

export interface ScheduledReport {
  removed: string[];
  markedStopped: string[];
  adopted: string[];
  stopped: string[];
  requeued: string[];
  failed: string[];
  expired: string[];
  /** Deleted jobs whose objects this run confirmed gone. */
  purged: string[];
  started: string[];
  created: string[];
  errors: string[];
}

const message = (err: unknown) =>
  err instanceof FlyApiError
    ? `${err.kind} ${err.status}: ${err.message}`
    : err instanceof Error
      ? err.message
      : String(err);

export async function runScheduled(env: Env, nowMs: number, deps: ScheduledDeps = {}): Promise<ScheduledReport> {
  const settings = parseSettings(env);
  const redis = deps.redis ?? redisFromSettings(settings);
  const fly = deps.fly ?? createFlyClient(settings);
  const say = (level: "info" | "warn" | "error", fields: Record<string, unknown>) =>
    log(settings.LOG_LEVEL, level, "cron", fields);
  const report: ScheduledReport = {
    removed: [],
    markedStopped: [],
    adopted: [],
    stopped: [],
    requeued: [],
    failed: [],
    expired: [],
    purged: [],
    started: [],
    created: [],
    errors: [],
  };
  const step = async (name: string, work: () => Promise<void>) => {
    try {
      await work();
    } catch (err) {
      report.errors.push(`${name}: ${message(err)}`);
      say("error", { event: `${name}_failed`, error: message(err) });
    }
  };
  const notify = async (jobs: StoredJob[]) => {
    for (const job of jobs)
      await enqueueCallback(env, job).catch((err: unknown) =>
        say("error", { event: "callback_enqueue_failed", jobId: job.id, error: message(err) }),
      );
  };

  await step("reconcile", async () => {
    const listed = await fly.listMachines();
    const observed = listed.map((m) => ({
      id: m.id,
      flyState: m.state,
      phase: machinePhase(m.state),
      name: m.name,
      region: m.region,
    }));
    const result = await reconcilePool(redis, observed, nowMs, RECONCILE_GRACE_MS);
    report.removed = result.removed;
    report.markedStopped = result.stopped;
    report.adopted = result.adopted;
    if (result.removed.length + result.stopped.length + result.adopted.length > 0)
      say("info", { event: "pool_reconciled", ...result });
  });

  await step("idle_stop", async () => {
    const idleMs = settings.MACHINE_IDLE_STOP_SECONDS * 1000;
    for (const machine of await readPool(redis)) {
      // A stop Fly has not acted on yet is asked again (stop is idempotent at Fly).
      const stopAgain =
        machine.state === machineStateNames.stopping &&
        machine.flyState !== undefined &&
        machinePhase(machine.flyState) === "started" &&
        nowMs - (machine.updatedAt ?? nowMs) >= RECONCILE_GRACE_MS;
      const stopNow = !stopAgain && (await markMachineStopping(redis, machine.id, idleMs, nowMs));
      if (!stopNow && !stopAgain) continue;
      try {
        await fly.stopMachine(machine.id);
        report.stopped.push(machine.id);
        say("info", { event: "machine_stopped", machineId: machine.id, lastJobFinishedAt: machine.lastJobFinishedAt });
      } catch (err) {
        say("warn", { event: "machine_stop_failed", machineId: machine.id, error: message(err) });
        report.errors.push(`stop ${machine.id}: ${message(err)}`);
        await machineCallFailed(
          redis,
          machine.id,
          { call: "stop", gone: err instanceof FlyApiError && err.kind === "not_found", error: message(err) },
          nowMs,
        );
      }
    }
  });

  await step("lease_recovery", async () => {
    const { requeued, failed } = await recoverExpiredLeases(redis, nowMs);
    report.requeued = requeued;
    report.failed = failed.map((j) => j.id);
    if (requeued.length + failed.length > 0)
      say("info", { event: "leases_recovered", requeued, failed: report.failed });
    await notify(failed);
  });

  await step("upload_expiry", async () => {
    const expired = await expireStaleUploads(redis, nowMs);
    report.expired = expired.map((j) => j.id);
    if (expired.length > 0) say("info", { event: "uploads_expired", jobs: report.expired });
    await notify(expired);
  });

  await step("purge", async () => {
    const result = await purgeDueJobs(settings, redis, nowMs);
    report.purged = result.purged;
    report.errors.push(...result.errors);
    if (result.purged.length + result.errors.length > 0)
      say(result.errors.length > 0 ? "warn" : "info", { event: "deleted_jobs_purged", ...result });
  });

  await step("admission", async () => {
    const admitted = await admitMachines(settings, redis, fly, nowMs, "cron");
    report.started = admitted.started;
    report.created = admitted.created;
    for (const f of admitted.failures) report.errors.push(`admission: ${f.kind} ${f.status}: ${f.message}`);
  });

  return report;
}
