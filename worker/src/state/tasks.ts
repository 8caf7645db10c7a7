/**
 * Chunked jobs in Redis: the split of a job into tasks, every event about a task, the tasks a
 * finalize step or the live playlists' writer reads, and that writer's lock (scripts/tasks.ts).
 */
import {
  type MachineEvent,
  type SplitPlan,
  TaskResult,
  TaskSpec,
  TaskState,
  taskIdOf,
  taskNames,
  taskStates,
} from "../contract/index.ts";
import { keys } from "./keys.ts";
import { asList, flatToRecord, type StateRedis } from "./script.ts";
import {
  beginLivePassScript,
  endLivePassScript,
  lockLiveScript,
  markLiveScript,
  readTasksScript,
} from "./scripts/tasks.ts";

/** Task state names for the scripts, from the contract. */
export const taskStateNames = Object.fromEntries(taskStates.map((s) => [s, s])) as { [S in TaskState]: S };

/**
 * A task's share of its job's progress: encoding video dominates; audio, stills and the stitch are
 * a fraction of a chunk of the same length.
 */
export function taskWeight(spec: TaskSpec): number {
  const factor = { video: 1, audio: 0.05, stills: 0.1, finalize: 0.05 }[spec.kind];
  return Math.max(0.001, spec.durationSeconds * factor);
}

export type SplitEvent = Extract<MachineEvent, { type: "split" }>;

/** Script config for a split: the tasks in queue order, finalize held back until they are done. */
export function splitConfig(event: SplitEvent, plan: SplitPlan) {
  const finalize: TaskSpec = { kind: "finalize", durationSeconds: plan.probe.durationSeconds };
  return {
    outcome: event.type,
    stage: "transcoding",
    probe: JSON.stringify(plan.probe),
    tasks: plan.tasks.map((t) => ({ name: t.name, spec: JSON.stringify(t.spec), weight: String(taskWeight(t.spec)) })),
    finalizeName: taskNames.finalize,
    finalizeSpec: JSON.stringify(finalize),
    finalizeWeight: String(taskWeight(finalize)),
  };
}

/** What an event about a task does (see taskEventScript). */
export function taskEventConfig(event: MachineEvent & { task: string }) {
  const base = {
    taskKey: keys.task(taskIdOf(event.jobId, event.task)),
    taskId: taskIdOf(event.jobId, event.task),
    task: event.task,
    outcome: event.type,
    finalizeName: taskNames.finalize,
  };
  switch (event.type) {
    case "claimed":
    case "heartbeat":
      return { ...base, kind: "heartbeat" };
    case "progress":
      return { ...base, kind: "progress", progress: String(event.progress), stage: event.stage };
    case "task_completed":
      return { ...base, kind: "done", replayState: taskStateNames.done, result: JSON.stringify(event.result) };
    case "completed":
      return {
        ...base,
        kind: "completed",
        replayState: taskStateNames.done,
        outputs: JSON.stringify(event.outputs),
        probe: JSON.stringify(event.probe),
        usage: event.usage,
      };
    case "failed":
      return {
        ...base,
        kind: "failed",
        retryable: event.retryable,
        error: JSON.stringify(event.error),
        probe: event.probe ? JSON.stringify(event.probe) : undefined,
      };
    case "released":
      return { ...base, kind: "released", retryable: true, error: "" };
    case "split":
      throw new Error("state: a split is an event about a job, never about a task");
  }
}

export interface StoredTask {
  id: string;
  name: string;
  state: TaskState;
  spec: TaskSpec;
  attempts: number;
  maxAttempts: number;
  machineId?: string;
  progress: number;
  result?: TaskResult;
}

function taskFromHash(flat: unknown): StoredTask | null {
  const h = flatToRecord(flat);
  if (h.id === undefined || h.name === undefined || h.spec === undefined) return null;
  return {
    id: h.id,
    name: h.name,
    state: TaskState.catch("pending").parse(h.state),
    spec: TaskSpec.parse(JSON.parse(h.spec)),
    attempts: Number(h.attempts ?? 0),
    maxAttempts: Number(h.maxAttempts ?? 1),
    ...(h.machineId === undefined ? {} : { machineId: h.machineId }),
    progress: Number(h.progress ?? 0),
    ...(h.result === undefined ? {} : { result: TaskResult.parse(JSON.parse(h.result)) }),
  };
}

/** The raw job hash and the tasks it has so far (finalize appears once it is queued). */
export async function readTasks(
  redis: StateRedis,
  jobId: string,
): Promise<{ job: Record<string, string>; tasks: StoredTask[] }> {
  const res = await readTasksScript.run<{ job: unknown; tasks: unknown }>(redis, {
    id: jobId,
    jobKey: keys.job(jobId),
    taskPrefix: keys.taskPrefix,
  });
  return {
    job: flatToRecord(res.job),
    tasks: asList<unknown>(res.tasks)
      .map(taskFromHash)
      .filter((t): t is StoredTask => t !== null),
  };
}

/** The job's live playlists exist at `liveMasterKey`: it shows them and is playable. */
export async function markLive(redis: StateRedis, jobId: string, liveMasterKey: string): Promise<boolean> {
  const res = await markLiveScript.run<{ marked: boolean }>(redis, {
    jobKey: keys.job(jobId),
    liveMaster: liveMasterKey,
    running: "running",
    completed: "completed",
  });
  return res.marked === true;
}

/**
 * Runs `pass` until it has seen every change asked for: whoever finishes a task asks for a pass;
 * one writer at a time makes them (the package lock), and a writer that finds the lock taken
 * leaves its pass to the holder, which goes again before letting go. So the last write always
 * reflects the last change, whatever order machines finish in. Returns false when another
 * writer took the pass.
 */
export async function withLivePasses(
  redis: StateRedis,
  jobId: string,
  pass: () => Promise<void>,
  ttlMs = 60_000,
): Promise<boolean> {
  const cfg = { jobKey: keys.job(jobId), lockKey: keys.packageLock(jobId), token: crypto.randomUUID(), ttlMs };
  const lock = await lockLiveScript.run<{ locked: boolean }>(redis, cfg);
  if (!lock.locked) return false;
  for (;;) {
    await beginLivePassScript.run(redis, cfg);
    try {
      await pass();
    } catch (error) {
      await endLivePassScript.run(redis, { ...cfg, ttlMs: 1 });
      throw error;
    }
    const end = await endLivePassScript.run<{ next: "done" | "again" | "lost" }>(redis, cfg);
    if (end.next !== "again") return end.next === "done";
  }
}
