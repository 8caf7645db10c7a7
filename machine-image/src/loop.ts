/**
 * The machine's life: claim a job, work it while heartbeating the lease, report the outcome, and
 * stop once it has been idle long enough. Idle time is measured from when the machine last FINISHED
 * a job (or booted); an empty poll never resets it, so an idle machine always stops.
 */
import {
  isPresetName,
  type JobStage,
  type LoudnessSetting,
  type MachineEvent,
  type PlaybackPolicy,
  type ProbeSummary,
  presets,
  type SourceFetchPolicy,
  type TaskResult,
  type TaskSpec,
} from "@tcoder/worker/contract";
import type { ControlPlane } from "./control-plane.ts";
import { AttemptStoppedError, type JobToRun, type TranscodeOutcome } from "./transcode.ts";

/** What the loop needs from a claim (the control plane's `ClaimedJob`). */
export interface Claim {
  jobId: string;
  attempt: number;
  preset: string;
  inputKey: string;
  playback?: PlaybackPolicy;
  source?: SourceFetchPolicy;
  loudness?: LoudnessSetting;
  /** A task of a chunked job: its events carry its name and its own attempt. */
  task?: { name: string; attempt: number; spec: TaskSpec; results: Record<string, TaskResult> };
  probe?: ProbeSummary;
}

export interface JobRunContext {
  signal: AbortSignal;
  onProgress: (stage: JobStage, progress: number) => void;
  /** A heartbeat that must be answered `continue`: the fence before publishing. */
  confirmLease: () => Promise<boolean>;
}

export type Logger = (
  level: "debug" | "info" | "warn" | "error",
  message: string,
  fields?: Record<string, unknown>,
) => void;

export interface LoopDeps {
  machineId: string;
  leaseSeconds: number;
  idleStopSeconds: number;
  pollMinMs: number;
  pollMaxMs: number;
  claim: () => Promise<Claim | null>;
  controlPlane: ControlPlane;
  runJob: (job: JobToRun, context: JobRunContext) => Promise<TranscodeOutcome>;
  /** Aborted on SIGTERM/SIGINT. */
  shutdown: AbortSignal;
  log?: Logger;
  now?: () => number;
  /** Minimum time between progress events. */
  progressIntervalMs?: number;
  /**
   * Runs after the control plane accepted a task's outcome (or a chunked job's completion): the
   * live playlists of the job are brought up to date. Failures are logged, never fatal.
   */
  afterTask?: (claim: Claim) => Promise<void>;
}

export type LoopExit = { reason: "idle" | "shutdown"; jobsFinished: number };

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });

/** Full-jitter exponential backoff for the n-th consecutive empty poll (n ≥ 1). */
export const pollDelayMs = (emptyPolls: number, minMs: number, maxMs: number, random = Math.random) => {
  const ceiling = Math.min(maxMs, minMs * 2 ** Math.min(emptyPolls - 1, 20));
  return Math.round(minMs / 2 + random() * (ceiling - minMs / 2));
};

export async function runMachineLoop(deps: LoopDeps): Promise<LoopExit> {
  const now = deps.now ?? Date.now;
  const log: Logger = deps.log ?? (() => {});
  const idleMs = deps.idleStopSeconds * 1000;
  let lastFinishedAt = now();
  let emptyPolls = 0;
  let jobsFinished = 0;

  while (!deps.shutdown.aborted) {
    const idleFor = now() - lastFinishedAt;
    if (idleFor >= idleMs) {
      log("info", "idle; stopping", { idleSeconds: Math.round(idleFor / 1000), jobsFinished });
      return { reason: "idle", jobsFinished };
    }
    let claim: Claim | null = null;
    try {
      claim = await deps.claim();
    } catch (error) {
      log("warn", "claim failed", { error: (error as Error).message });
    }
    if (!claim) {
      emptyPolls++;
      const untilIdle = idleMs - (now() - lastFinishedAt);
      await sleep(
        Math.max(0, Math.min(pollDelayMs(emptyPolls, deps.pollMinMs, deps.pollMaxMs), untilIdle)),
        deps.shutdown,
      );
      continue;
    }
    emptyPolls = 0;
    const released = await workOn(claim, deps, log, now);
    lastFinishedAt = now();
    jobsFinished++;
    if (released) break;
  }
  return { reason: "shutdown", jobsFinished };
}

async function runAfterTask(
  claim: Claim,
  deps: LoopDeps,
  jobLog: (level: "warn", message: string, fields?: Record<string, unknown>) => void,
) {
  try {
    await deps.afterTask?.(claim);
  } catch (error) {
    jobLog("warn", "could not update the live playlists", { error: (error as Error).message });
  }
}

/** Works one claimed job to its end. Returns true when the machine is shutting down. */
async function workOn(claim: Claim, deps: LoopDeps, log: Logger, now: () => number): Promise<boolean> {
  // A task's events are about the task: its name and its own attempt.
  const base = claim.task
    ? { jobId: claim.jobId, machineId: deps.machineId, attempt: claim.task.attempt, task: claim.task.name }
    : { jobId: claim.jobId, machineId: deps.machineId, attempt: claim.attempt };
  const jobLog = (level: Parameters<Logger>[0], message: string, fields?: Record<string, unknown>) =>
    log(level, message, {
      jobId: claim.jobId,
      attempt: base.attempt,
      ...(claim.task ? { task: claim.task.name } : {}),
      ...fields,
    });
  const lost = new AbortController();
  const signal = AbortSignal.any([lost.signal, deps.shutdown]);

  /** Sends an event; an `abort` answer stops the work (canceled, or this attempt lost its lease). */
  const send = async (event: MachineEvent, attempts?: number) => {
    try {
      const answer = await deps.controlPlane.send(event, attempts ? { attempts } : {});
      if (answer.action === "abort" && !lost.signal.aborted) {
        jobLog("warn", "control plane says abort; dropping the work", { after: event.type });
        lost.abort();
      }
      return answer;
    } catch (error) {
      jobLog("warn", `could not send ${event.type}`, { error: (error as Error).message });
      return null;
    }
  };

  jobLog("info", "claimed", { preset: claim.preset, inputKey: claim.inputKey });
  // A heartbeat by another name (it extends the lease): the work starts alongside it, and an
  // `abort` answer stops the work through the signal as any event's does.
  const claimed = send({ type: "claimed", ...base });

  const heartbeat = setInterval(() => void send({ type: "heartbeat", ...base }), (deps.leaseSeconds * 1000) / 3);
  const progressIntervalMs = deps.progressIntervalMs ?? 2000;
  let lastProgressAt = 0;
  let lastStage: JobStage | null = null;
  let progressInFlight = false;
  const onProgress = (stage: JobStage, progress: number) => {
    const at = now();
    if (progressInFlight || (stage === lastStage && at - lastProgressAt < progressIntervalMs)) return;
    lastProgressAt = at;
    lastStage = stage;
    progressInFlight = true;
    const rounded = Math.round(Math.min(1, Math.max(0, progress)) * 1000) / 1000;
    void send({ type: "progress", ...base, stage, progress: rounded }, 2).finally(() => {
      progressInFlight = false;
    });
  };

  try {
    if (lost.signal.aborted) return false;
    if (!isPresetName(claim.preset)) {
      await send(
        {
          type: "failed",
          ...base,
          error: { code: "unsupported", message: `unknown preset ${claim.preset}` },
          retryable: false,
        },
        10,
      );
      return false;
    }
    const job: JobToRun = {
      jobId: claim.jobId,
      attempt: claim.attempt,
      preset: presets[claim.preset],
      inputKey: claim.inputKey,
      ...(claim.playback ? { playback: claim.playback } : {}),
      ...(claim.source ? { source: claim.source } : {}),
      ...(claim.loudness ? { loudness: claim.loudness } : {}),
      ...(claim.task ? { task: claim.task } : {}),
      ...(claim.probe ? { probe: claim.probe } : {}),
    };
    let outcome: TranscodeOutcome;
    try {
      const confirmLease = async () => {
        const answer = await send({ type: "heartbeat", ...base }, 6);
        return answer?.action === "continue" && !lost.signal.aborted;
      };
      outcome = await deps.runJob(job, { signal, onProgress, confirmLease });
    } catch (error) {
      if (error instanceof AttemptStoppedError || signal.aborted) {
        if (deps.shutdown.aborted && !lost.signal.aborted) {
          jobLog("info", "shutting down; releasing the job");
          await send({ type: "released", ...base, reason: "machine shutting down" }, 4);
        }
        if (!deps.shutdown.aborted) jobLog("warn", "attempt stopped without publishing (lease not confirmed)");
        return deps.shutdown.aborted;
      }
      jobLog("error", "attempt crashed", { error: (error as Error).stack ?? String(error) });
      outcome = {
        kind: "failed",
        error: { code: "internal", message: `machine error: ${(error as Error).message}`.slice(0, 2000) },
        retryable: true,
      };
    }
    // Outcomes matter more than progress: keep trying through a control-plane blip.
    if (outcome.kind === "split") {
      jobLog("info", "split into tasks", { tasks: outcome.plan.tasks.length });
      await send({ type: "split", ...base, plan: outcome.plan }, 12);
    } else if (outcome.kind === "task_completed") {
      jobLog("info", "task completed");
      const answer = await send({ type: "task_completed", ...base, result: outcome.result }, 12);
      if (answer?.action === "continue") await runAfterTask(claim, deps, jobLog);
    } else if (outcome.kind === "completed") {
      jobLog("info", "completed", { renditions: outcome.outputs.renditions.length });
      const { manifest } = outcome;
      // What the package costs to keep: every file it lists, plus the manifest itself.
      const usage = {
        outputSeconds: manifest.durationSeconds,
        packageBytes: manifest.files.reduce((sum, file) => sum + file.sizeBytes, 0),
        objects: manifest.files.length + 1,
      };
      const answer = await send(
        { type: "completed", ...base, outputs: outcome.outputs, probe: outcome.probe, usage },
        12,
      );
      if (claim.task && answer?.action === "continue") await runAfterTask(claim, deps, jobLog);
    } else {
      jobLog("warn", "failed", { code: outcome.error.code, message: outcome.error.message });
      await send(
        {
          type: "failed",
          ...base,
          error: outcome.error,
          retryable: outcome.retryable,
          ...(outcome.probe ? { probe: outcome.probe } : {}),
        },
        12,
      );
    }
    return deps.shutdown.aborted;
  } finally {
    clearInterval(heartbeat);
    await claimed;
  }
}
