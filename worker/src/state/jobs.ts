/**
 * Job records in Redis and every move between job states.
 *
 * A job is a hash (`keys.job(id)`): `id`, `state`, `preset`, `playback` (absent: public), `progress`, `stage`, `attempts`
 * (claims that counted), `maxAttempts`, `inputKey`, `inputSizeBytes`, `inputETag`, `machineId`,
 * `leaseMs`; times in epoch ms: `createdAt`, `updatedAt`, `uploadExpiresAt`, `uploadedAt`,
 * `queuedAt`, `startedAt`, `finishedAt`, `leaseExpiresAt`, and once deleted `deletedAt`,
 * `purgeNotBefore` (the earliest a purge may settle the job) and `purgedAt`; usage (script.ts prelude):
 * `machineTime` (JSON, one entry per ended attempt), `endedStartedAt`, `outputSeconds`,
 * `storedBytes`; JSON: `probe`, `outputs`, `error`,
 * `callback`, and `client` (filename, content type, callback URL, metadata: the values a client
 * chose, kept in JSON so no client string is ever mistaken for a number by a Redis client);
 * while a multipart upload is open, `multipartUploadId` and `multipartPartBytes` (uploads.ts); for
 * a job ingested from a URL, `sourceUrl`, `sourceMaxBytes` and `sourceAllowLoopback` ("1"/"0"), the
 * fetch policy the claim hands to the machine; `loudness` (JSON, contract LoudnessSetting) when the
 * client asked for normalized audio, also handed to the machine by the claim.
 * Each state change is one Lua script (scripts/jobs.ts) whose allowed `from` states come from the
 * contract's `transitions`, so no event order can move a job backwards.
 */
import {
  canTransition,
  type Job,
  JobError,
  JobState,
  type JobUsage,
  jobStates,
  LoudnessSetting,
  type MachineEvent,
  OutputKeys,
  PlaybackPolicy,
  type PresetName,
  ProbeSummary,
  type SourceFetchPolicy,
  SplitPlan,
  TaskResult,
  TaskSpec,
  taskNames,
  terminalStates,
} from "../contract/index.ts";
import { HOUR_MS, hourStart, keys, USAGE_TTL_SECONDS } from "./keys.ts";
import { machineStateNames, machineStates } from "./pool.ts";
import { asList, flatToRecord, type StateRedis, type StateScript } from "./script.ts";
import {
  cancelScript,
  claimScript,
  createJobScript,
  deleteJobScript,
  duePurgesScript,
  expireUploadsScript,
  finishPurgeScript,
  listJobsScript,
  lockPackageScript,
  machineEventScript,
  markUploadedScript,
  readJobScript,
  recordCallbackScript,
  recoverLeasesScript,
  replaceOutputsScript,
  retryScript,
  statsScript,
  unlockPackageScript,
} from "./scripts/jobs.ts";
import { splitJobScript, taskEventScript } from "./scripts/tasks.ts";
import { splitConfig, taskEventConfig, taskStateNames } from "./tasks.ts";

/** The stored job: the public `Job`, except outputs are keys (the API adds URLs). */
export type StoredJob = Omit<Job, "outputs" | "live"> & { outputs?: OutputKeys; live?: { hlsMaster: string } };

export interface ClaimedJob {
  jobId: string;
  attempt: number;
  preset: PresetName;
  inputKey: string;
  /** Decides the bucket the package is published to (contract `packageBucketVar`). */
  playback: PlaybackPolicy;
  /** For a job ingested from a URL: where and within which limits the machine fetches the source. */
  source?: SourceFetchPolicy;
  /** Normalize every audio rendition to this loudness. */
  loudness?: LoudnessSetting;
  /** Epoch ms. */
  leaseExpiresAt: number;
  /**
   * A task of a chunked job (contract/tasks.ts): events carry its name and its own attempt;
   * `attempt` above stays the job's (the package's prefix). Finalize gets every other task's result.
   */
  task?: { name: string; attempt: number; spec: TaskSpec; results: Record<string, TaskResult> };
  /** The job's probe, recorded at the split: every task plans from the same one. */
  probe?: ProbeSummary;
}

export class StateError extends Error {
  constructor(
    readonly code: "conflict" | "invalid_cursor",
    message: string,
  ) {
    super(message);
    this.name = "StateError";
  }
}

/** State names, from the contract (never re-typed here). */
const S = JobState.enum;

/** States from which `to` may be reached, straight from the contract's transition table. */
export const allowedFrom = (to: JobState): JobState[] => jobStates.filter((from) => canTransition(from, to));

/** Fails at module load, not at 3am, if the contract stops allowing a move this module makes. */
function requireTransitions(pairs: [JobState, JobState][]): void {
  for (const [from, to] of pairs)
    if (!canTransition(from, to)) throw new Error(`state: contract no longer allows ${from} → ${to}`);
}
requireTransitions([
  [S.awaiting_upload, S.pending],
  [S.awaiting_upload, S.expired],
  [S.pending, S.running],
  [S.running, S.completed],
  [S.running, S.failed],
  [S.running, S.pending],
  [S.failed, S.pending],
  [S.canceled, S.pending],
  ...jobStates.filter((from) => from !== S.deleted).map((from): [JobState, JobState] => [from, S.deleted]),
]);

const common = (nowMs: number) => ({
  now: String(nowMs),
  jobPrefix: keys.jobPrefix,
  statePrefix: keys.jobsInStatePrefix,
  machinePrefix: keys.machinePrefix,
  m: machineStateNames,
  // A chunked job's tasks (their hashes, and their states' names), which job changes reach too.
  taskPrefix: keys.taskPrefix,
  t: taskStateNames,
  // Where this moment's usage is counted (the prelude's end_attempt, count_completion).
  usageKey: keys.usageHour(hourStart(nowMs)),
  usageTtl: USAGE_TTL_SECONDS,
  storedBytesKey: keys.storedBytes,
});

interface ClientFields {
  filename?: string;
  contentType?: string;
  callbackUrl?: string;
  metadata?: Record<string, string>;
}

const iso = (ms: string | undefined) => (ms === undefined ? undefined : new Date(Number(ms)).toISOString());
const num = (v: string | undefined) => (v === undefined ? undefined : Number(v));
const json = (v: string | undefined): unknown => (v === undefined ? undefined : JSON.parse(v));

function withoutUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}

/** A job hash (raw strings) as a StoredJob; null for a missing job. */
export function jobFromHash(flat: unknown): StoredJob | null {
  const h = flatToRecord(flat);
  if (h.id === undefined || h.state === undefined) return null;
  const client = (json(h.client) ?? {}) as ClientFields;
  const outputs = h.outputs === undefined ? undefined : OutputKeys.parse(json(h.outputs));
  const probe = h.probe === undefined ? undefined : ProbeSummary.parse(json(h.probe));
  const error = h.error === undefined ? undefined : JobError.parse(json(h.error));
  return withoutUndefined<StoredJob>({
    id: h.id,
    state: h.state as JobState,
    preset: h.preset ?? "",
    playback: PlaybackPolicy.catch("public").parse(h.playback),
    loudness: loudnessOf(h.loudness),
    progress: Number(h.progress ?? 0),
    stage: h.stage as StoredJob["stage"],
    attempts: Number(h.attempts ?? 0),
    maxAttempts: Number(h.maxAttempts ?? 1),
    input: withoutUndefined({
      key: h.inputKey ?? "",
      url: h.sourceUrl,
      filename: client.filename,
      contentType: client.contentType,
      sizeBytes: num(h.inputSizeBytes),
    }),
    probe,
    outputs,
    // A canceled or failed job's live playlists stop growing; they are not something to watch.
    playable: (h.state === S.running && h.playable === "1") || (h.state === S.completed && outputs !== undefined),
    live: h.liveMaster === undefined || h.state === S.deleted ? undefined : { hlsMaster: h.liveMaster },
    tasks: taskCountsOf(h),
    error,
    machineId: h.machineId,
    callbackUrl: client.callbackUrl,
    callback: json(h.callback) as StoredJob["callback"],
    metadata: client.metadata,
    createdAt: iso(h.createdAt) ?? new Date(0).toISOString(),
    updatedAt: iso(h.updatedAt) ?? new Date(0).toISOString(),
    uploadExpiresAt: iso(h.uploadExpiresAt),
    queuedAt: iso(h.queuedAt),
    startedAt: iso(h.startedAt),
    finishedAt: iso(h.finishedAt),
    leaseExpiresAt: iso(h.leaseExpiresAt),
    usage: usageFromHash(h),
    deletedAt: iso(h.deletedAt),
    purgedAt: iso(h.purgedAt),
  });
}

/** A chunked job's tasks by state (finalize counts as pending until it is queued). */
function taskCountsOf(h: Record<string, string>): StoredJob["tasks"] {
  if (h.tasks === undefined) return undefined;
  const total = asList<string>(JSON.parse(h.tasks)).length;
  const running = Number(h[`tasks:${taskStateNames.running}`] ?? 0);
  const done = Number(h[`tasks:${taskStateNames.done}`] ?? 0);
  const canceled = Number(h[`tasks:${taskStateNames.canceled}`] ?? 0);
  return { total, pending: Math.max(0, total - running - done - canceled), running, done };
}

/** The job's cost so far, from the fields the scripts record; absent until something was spent. */
function usageFromHash(h: Record<string, string>): JobUsage | undefined {
  const entries = asList<{
    attempt: number;
    machineId: string;
    startedAt: string;
    seconds: number;
    outcome: string;
    task?: string;
  }>(json(h.machineTime));
  if (entries.length === 0 && h.outputSeconds === undefined) return undefined;
  const attempts = entries.map((e) => ({
    attempt: Number(e.attempt),
    machineId: String(e.machineId),
    startedAt: new Date(Number(e.startedAt)).toISOString(),
    seconds: Number(e.seconds),
    outcome: String(e.outcome),
    ...(e.task === undefined ? {} : { task: String(e.task) }),
  }));
  const machineSeconds = Math.round(attempts.reduce((sum, a) => sum + a.seconds, 0) * 1000) / 1000;
  return withoutUndefined<JobUsage>({
    machineSeconds,
    attempts,
    outputMinutes: h.outputSeconds === undefined ? undefined : Math.round((Number(h.outputSeconds) / 60) * 1000) / 1000,
    storedBytes: num(h.storedBytes),
  });
}

/** The stored loudness setting; one that does not parse (never written by this code) counts as none. */
function loudnessOf(stored: string | false | undefined): LoudnessSetting | undefined {
  if (typeof stored !== "string") return undefined;
  const parsed = LoudnessSetting.safeParse(JSON.parse(stored));
  return parsed.success ? parsed.data : undefined;
}

function requireJob(flat: unknown): StoredJob {
  const job = jobFromHash(flat);
  if (!job) throw new Error("state: script answered without the job it changed");
  return job;
}

export interface NewJob {
  id: string;
  preset: string;
  playback?: PlaybackPolicy;
  loudness?: LoudnessSetting;
  input: { key: string; filename?: string; contentType?: string; sizeBytes?: number };
  callbackUrl?: string;
  metadata?: Record<string, string>;
  /** Ingest from a URL: the machine downloads the source (always created `pending`). */
  source?: SourceFetchPolicy;
  state: "awaiting_upload" | "pending";
  /** Epoch ms; only for awaiting_upload. */
  uploadExpiresAt?: number;
  maxAttempts: number;
}

export async function createJob(redis: StateRedis, job: NewJob, nowMs: number): Promise<StoredJob> {
  const now = String(nowMs);
  const queued = job.state === S.pending;
  const client: ClientFields = withoutUndefined({
    filename: job.input.filename,
    contentType: job.input.contentType,
    callbackUrl: job.callbackUrl,
    metadata: job.metadata,
  });
  const fields: Record<string, string | undefined> = {
    id: job.id,
    state: job.state,
    preset: job.preset,
    playback: job.playback ?? PlaybackPolicy.enum.public,
    loudness: job.loudness === undefined ? undefined : JSON.stringify(job.loudness),
    progress: "0",
    attempts: "0",
    maxAttempts: String(job.maxAttempts),
    inputKey: job.input.key,
    inputSizeBytes: job.input.sizeBytes === undefined ? undefined : String(job.input.sizeBytes),
    client: JSON.stringify(client),
    createdAt: now,
    updatedAt: now,
    uploadExpiresAt: !queued && job.uploadExpiresAt !== undefined ? String(Math.floor(job.uploadExpiresAt)) : undefined,
    queuedAt: queued ? now : undefined,
    uploadedAt: queued ? now : undefined,
    sourceUrl: job.source?.url,
    sourceMaxBytes: job.source ? String(job.source.maxBytes) : undefined,
    sourceAllowLoopback: job.source ? (job.source.allowLoopback ? "1" : "0") : undefined,
  };
  const flat = Object.entries(fields).flatMap(([k, v]) => (v === undefined ? [] : [k, v]));
  const res = await createJobScript.run<{ created: boolean; job: unknown }>(redis, {
    ...common(nowMs),
    id: job.id,
    jobKey: keys.job(job.id),
    state: job.state,
    fields: flat,
    enqueue: queued,
    uploadExpiresAt: fields.uploadExpiresAt,
  });
  if (!res.created) throw new StateError("conflict", `job ${job.id} already exists`);
  return requireJob(res.job);
}

export async function getJob(redis: StateRedis, id: string): Promise<StoredJob | null> {
  const res = await readJobScript.run<{ job: unknown }>(redis, { jobKey: keys.job(id) });
  return jobFromHash(res.job);
}

export async function listJobs(
  redis: StateRedis,
  opts: { state?: JobState; cursor?: string; limit: number },
): Promise<{ jobs: StoredJob[]; nextCursor: string | null }> {
  let cursorScore: string | undefined;
  let cursorId: string | undefined;
  if (opts.cursor) {
    const match = /^(\d+):(.+)$/.exec(opts.cursor);
    if (!match) throw new StateError("invalid_cursor", "cursor is not one this API returned");
    [, cursorScore, cursorId] = match;
  }
  const limit = Math.max(1, Math.min(1000, Math.floor(opts.limit)));
  const index = opts.state ? keys.jobsInState(opts.state) : keys.allJobs;
  const res = await listJobsScript.run<{ jobs: unknown; nextCursor: string | false }>(redis, {
    index,
    jobPrefix: keys.jobPrefix,
    limit,
    cursorScore,
    cursorId,
  });
  const jobs = asList<unknown>(res.jobs)
    .map(jobFromHash)
    .filter((j): j is StoredJob => j !== null);
  return { jobs, nextCursor: res.nextCursor || null };
}

/** An object was uploaded for the job: `awaiting_upload → pending` and enqueued, exactly once. */
export async function markUploaded(
  redis: StateRedis,
  jobId: string,
  upload: { sizeBytes?: number; eTag?: string },
  nowMs: number,
): Promise<"queued" | "duplicate" | "unknown"> {
  const res = await markUploadedScript.run<{ result: "queued" | "duplicate" | "unknown" }>(redis, {
    ...common(nowMs),
    id: jobId,
    jobKey: keys.job(jobId),
    from: [S.awaiting_upload],
    to: S.pending,
    deleted: S.deleted,
    sizeBytes: upload.sizeBytes === undefined ? undefined : String(upload.sizeBytes),
    eTag: upload.eTag,
  });
  return res.result;
}

export type JobChange =
  | { ok: true; job: StoredJob }
  | { ok: false; reason: "not_found" | "invalid_state"; job?: StoredJob };

async function changeJob(redis: StateRedis, script: StateScript, cfg: object): Promise<JobChange> {
  const res = await script.run<{ result: "ok" | "not_found" | "invalid_state"; job?: unknown }>(redis, cfg);
  if (res.result === "ok") return { ok: true, job: requireJob(res.job) };
  const job = jobFromHash(res.job) ?? undefined;
  return job ? { ok: false, reason: res.result, job } : { ok: false, reason: res.result };
}

/** Cancel: out of the queue; a running job's machine gets `abort` on its next event. */
export function cancelJob(redis: StateRedis, id: string, nowMs: number): Promise<JobChange> {
  return changeJob(redis, cancelScript, {
    ...common(nowMs),
    id,
    jobKey: keys.job(id),
    from: allowedFrom(S.canceled),
    to: S.canceled,
    running: S.running,
  });
}

export type JobDeletion =
  | { result: "deleted" | "already"; job: StoredJob }
  | { result: "not_found" }
  | { result: "invalid_state"; job: StoredJob };

/**
 * Delete: the tombstone (deleteJobScript) and a place in the purge queue; the caller then removes
 * the objects (deletion/purge.ts) or leaves that to the cron.
 */
export async function deleteJob(redis: StateRedis, id: string, nowMs: number): Promise<JobDeletion> {
  const res = await deleteJobScript.run<{ result: "ok" | "already" | "not_found" | "invalid_state"; job?: unknown }>(
    redis,
    {
      ...common(nowMs),
      id,
      jobKey: keys.job(id),
      from: allowedFrom(S.deleted),
      to: S.deleted,
      running: S.running,
    },
  );
  if (res.result === "not_found") return { result: "not_found" };
  const job = requireJob(res.job);
  return { result: res.result === "ok" ? "deleted" : res.result, job };
}

/** Deleted jobs whose objects are due to be removed (first deletion, or a recheck). */
export async function duePurges(redis: StateRedis, nowMs: number, limit = 50): Promise<string[]> {
  const res = await duePurgesScript.run<{ ids: unknown }>(redis, { now: String(nowMs), limit });
  return asList<unknown>(res.ids).map(String);
}

/**
 * Records that a purge pass begun at `startedAtMs` found and removed every object of the job; true
 * when that settles it (`purgedAt`), false when it must run again later.
 */
export async function finishPurge(redis: StateRedis, id: string, startedAtMs: number): Promise<boolean> {
  const res = await finishPurgeScript.run<{ purged: boolean }>(redis, {
    now: String(startedAtMs),
    id,
    jobKey: keys.job(id),
    deleted: S.deleted,
    startedAt: String(startedAtMs),
  });
  return res.purged === true;
}

/** Retry: failed | canceled → pending, re-enqueued with attempts reset and the error cleared. */
export function retryJob(redis: StateRedis, id: string, nowMs: number): Promise<JobChange> {
  return changeJob(redis, retryScript, {
    ...common(nowMs),
    id,
    jobKey: keys.job(id),
    from: [S.failed, S.canceled],
    to: S.pending,
  });
}

/** The machine side: pop the oldest queued job and lease it to `machineId`, atomically. */
export async function claimNextJob(
  redis: StateRedis,
  args: { machineId: string; leaseSeconds: number; nowMs?: number },
): Promise<ClaimedJob | null> {
  const nowMs = args.nowMs ?? Date.now();
  const leaseMs = Math.round(args.leaseSeconds * 1000);
  const res = await claimScript.run<
    | { claimed: false }
    | {
        claimed: true;
        jobId: string;
        attempt: number;
        preset: string;
        inputKey: string;
        playback: string | false;
        loudness: string | false;
        source: { url: string | false; maxBytes: string | false; allowLoopback: string | false };
        task?: { name: string; attempt: number; spec: string; results: unknown };
        probe?: string | false;
      }
  >(redis, {
    ...common(nowMs),
    finalizeTask: taskNames.finalize,
    machineId: args.machineId,
    machineKey: keys.machine(args.machineId),
    from: allowedFrom(S.running),
    to: S.running,
    leaseMs: String(leaseMs),
    leaseExpiresAt: String(nowMs + leaseMs),
  });
  if (!res.claimed) return null;
  const loudness = loudnessOf(res.loudness);
  return {
    jobId: String(res.jobId),
    attempt: Number(res.attempt),
    preset: res.preset as PresetName,
    inputKey: String(res.inputKey),
    playback: PlaybackPolicy.catch("public").parse(res.playback),
    ...sourcePolicy(res.source),
    ...(loudness ? { loudness } : {}),
    leaseExpiresAt: nowMs + leaseMs,
    ...(res.task ? { task: claimedTask(res.task) } : {}),
    ...(typeof res.probe === "string" ? { probe: ProbeSummary.parse(JSON.parse(res.probe)) } : {}),
  };
}

/** The claim's task: its spec and, for finalize, every other task's result by name. */
function claimedTask(raw: { name: string; attempt: number; spec: string; results: unknown }): ClaimedJob["task"] {
  const results: Record<string, TaskResult> = {};
  for (const [name, result] of asList<[string, string | false]>(raw.results))
    if (typeof result === "string") results[String(name)] = TaskResult.parse(JSON.parse(result));
  return { name: String(raw.name), attempt: Number(raw.attempt), spec: TaskSpec.parse(JSON.parse(raw.spec)), results };
}

/** The claim's `sourceUrl`, `sourceMaxBytes` and `sourceAllowLoopback`, for a job ingested from a URL. */
function sourcePolicy({ url, maxBytes, allowLoopback }: Record<"url" | "maxBytes" | "allowLoopback", string | false>): {
  source?: SourceFetchPolicy;
} {
  if (typeof url !== "string" || typeof maxBytes !== "string") return {};
  return { source: { url, maxBytes: Number(maxBytes), allowLoopback: allowLoopback === "1" } };
}

export interface MachineEventOutcome {
  action: "continue" | "abort";
  job: StoredJob | null;
  /** This event moved the job into a terminal state (the caller sends the client callback). */
  becameTerminal: boolean;
}

/** What each event does to a running job it is entitled to touch. */
function eventChange(event: Exclude<MachineEvent, { type: "split" | "task_completed" }>) {
  switch (event.type) {
    case "claimed":
    case "heartbeat":
      return { extendLease: true, set: [] };
    case "progress":
      return { extendLease: true, set: ["progress", String(event.progress), "stage", event.stage] };
    case "completed":
      return {
        to: S.completed,
        replayState: S.completed,
        set: ["progress", "1", "outputs", JSON.stringify(event.outputs), "probe", JSON.stringify(event.probe)],
        usage: event.usage,
      };
    case "failed":
      return {
        to: S.failed,
        retryTo: event.retryable ? S.pending : undefined,
        replayState: S.failed,
        set: ["error", JSON.stringify(event.error), ...(event.probe ? ["probe", JSON.stringify(event.probe)] : [])],
      };
    case "released":
      // The machine gave the job back unfinished (shutdown): that claim does not count.
      return { to: S.pending, uncountAttempt: true, set: [] };
  }
}

export async function applyMachineEvent(
  redis: StateRedis,
  event: MachineEvent,
  nowMs: number,
): Promise<MachineEventOutcome> {
  type Answer = { action: "continue" | "abort"; terminal?: boolean; requeued?: boolean; job: unknown };
  const outcome = (res: Answer): MachineEventOutcome => ({
    action: res.action,
    job: jobFromHash(res.job),
    becameTerminal: res.terminal === true,
  });
  const jobFields = {
    ...common(nowMs),
    id: event.jobId,
    jobKey: keys.job(event.jobId),
    machineId: event.machineId,
    attempt: String(event.attempt),
    running: S.running,
    completed: S.completed,
    failed: S.failed,
    defaultLeaseMs: "60000",
  };
  if (event.task !== undefined)
    return outcome(
      await taskEventScript.run<Answer>(redis, {
        ...jobFields,
        ...taskEventConfig({ ...event, task: event.task }),
      }),
    );
  if (event.type === "split")
    return outcome(
      await splitJobScript.run<Answer>(redis, {
        ...jobFields,
        ...splitConfig(event, SplitPlan.parse(event.plan)),
      }),
    );
  // A task's outcome without the task's name is about nothing this job holds.
  if (event.type === "task_completed") return { action: "abort", job: null, becameTerminal: false };
  const res = await machineEventScript.run<{ action: "continue" | "abort"; terminal?: boolean; job: unknown }>(redis, {
    ...common(nowMs),
    ...eventChange(event),
    outcome: event.type,
    id: event.jobId,
    jobKey: keys.job(event.jobId),
    machineId: event.machineId,
    attempt: String(event.attempt),
    from: [S.running],
    queuedState: S.pending,
    terminalStates,
    defaultLeaseMs: "60000",
  });
  return { action: res.action, job: jobFromHash(res.job), becameTerminal: res.terminal === true };
}

/** Usage summed over a window (state/keys.ts hourly buckets). */
export interface UsageTotals {
  machineSeconds: number;
  /** Attempts that ended: each read the source once. */
  attempts: number;
  jobsCompleted: number;
  outputSeconds: number;
  objectsWritten: number;
  bytesWritten: number;
}

export interface JobStats {
  queued: number;
  running: number;
  oldestQueuedAgeSeconds: number | null;
  /** Pool machines by state (starting, idle, busy, stopping, stopped). */
  machines: Record<string, number>;
  /** The last Fly failure admission hit (after its retries), if any. */
  lastAdmissionError?: { message: string; status: number; at: string };
  usage: { last24Hours: UsageTotals; last30Days: UsageTotals; storedBytes: number };
}

const DAY_HOURS = 24;
const MONTH_HOURS = 30 * 24;

export async function getStats(redis: StateRedis, nowMs: number): Promise<JobStats> {
  const res = await statsScript.run<{
    queued: number;
    running: number;
    oldestQueuedAt: string | number | false;
    machines: Record<string, number>;
    admission: unknown;
    usage: { day: UsageTotals; month: UsageTotals; storedBytes: number };
  }>(redis, {
    ...common(nowMs),
    usageHourPrefix: keys.usageHourPrefix,
    hours: Array.from({ length: MONTH_HOURS }, (_, i) => String(hourStart(nowMs) - i * HOUR_MS)),
    dayHours: DAY_HOURS,
  });
  const totals = (t: UsageTotals): UsageTotals => ({
    machineSeconds: Math.round(Number(t.machineSeconds) * 1000) / 1000,
    attempts: Number(t.attempts),
    jobsCompleted: Number(t.jobsCompleted),
    outputSeconds: Math.round(Number(t.outputSeconds) * 1000) / 1000,
    objectsWritten: Number(t.objectsWritten),
    bytesWritten: Number(t.bytesWritten),
  });
  const machines: Record<string, number> = Object.fromEntries(machineStates.map((s) => [s, 0]));
  for (const [state, count] of Object.entries(res.machines ?? {})) machines[state] = Number(count);
  const oldest = res.oldestQueuedAt === false ? null : Number(res.oldestQueuedAt);
  const admission = flatToRecord(res.admission);
  return {
    queued: Number(res.queued),
    running: Number(res.running),
    oldestQueuedAgeSeconds: oldest === null ? null : Math.max(0, Math.floor((nowMs - oldest) / 1000)),
    machines,
    usage: {
      last24Hours: totals(res.usage.day),
      last30Days: totals(res.usage.month),
      storedBytes: Math.max(0, Number(res.usage.storedBytes)),
    },
    ...(admission.lastError === undefined
      ? {}
      : {
          lastAdmissionError: {
            message: admission.lastError,
            status: Number(admission.lastErrorStatus ?? 0),
            at: new Date(Number(admission.lastErrorAt ?? 0)).toISOString(),
          },
        }),
  };
}

async function readJobs(redis: StateRedis, ids: string[]): Promise<StoredJob[]> {
  const jobs = await Promise.all(ids.map((id) => getJob(redis, id)));
  return jobs.filter((j): j is StoredJob => j !== null);
}

/**
 * Running jobs whose lease passed: back to the queue (their claim already counted as an
 * attempt), or `failed` with `lease_expired` once `attempts >= maxAttempts`.
 */
export async function recoverExpiredLeases(
  redis: StateRedis,
  nowMs: number,
  limit = 200,
): Promise<{ requeued: string[]; failed: StoredJob[] }> {
  const error: JobError = { code: "lease_expired", message: "the machine stopped reporting before finishing" };
  const res = await recoverLeasesScript.run<{ requeued: unknown; failed: unknown }>(redis, {
    ...common(nowMs),
    limit,
    running: S.running,
    queued: S.pending,
    failed: S.failed,
    errorJson: JSON.stringify(error),
  });
  return { requeued: asList<string>(res.requeued).map(String), failed: await readJobs(redis, asList(res.failed)) };
}

/** awaiting_upload jobs past `uploadExpiresAt` become `expired`; returns them. */
export async function expireStaleUploads(redis: StateRedis, nowMs: number, limit = 200): Promise<StoredJob[]> {
  const res = await expireUploadsScript.run<{ expired: unknown }>(redis, {
    ...common(nowMs),
    limit,
    from: allowedFrom(S.expired),
    to: S.expired,
  });
  return readJobs(redis, asList<string>(res.expired).map(String));
}

/** Client-callback delivery state, recorded by the callbacks consumer. */
export async function recordCallbackState(
  redis: StateRedis,
  jobId: string,
  callback: NonNullable<StoredJob["callback"]>,
): Promise<boolean> {
  const res = await recordCallbackScript.run<{ found: boolean }>(redis, {
    jobKey: keys.job(jobId),
    callback: JSON.stringify(callback),
  });
  return res.found === true;
}

/**
 * Runs `change` holding the job's package lock, so two republishes of one package (captions added
 * and removed at once) never interleave; null when another change holds it. The lock expires after
 * `ttlMs` should this worker die mid-way.
 */
export async function withPackageLock<T>(
  redis: StateRedis,
  jobId: string,
  change: () => Promise<T>,
  ttlMs = 60_000,
): Promise<{ locked: false } | { locked: true; value: T }> {
  const lockKey = keys.packageLock(jobId);
  const token = crypto.randomUUID();
  const res = await lockPackageScript.run<{ locked: boolean }>(redis, { lockKey, token, ttlMs });
  if (!res.locked) return { locked: false };
  try {
    return { locked: true, value: await change() };
  } finally {
    await unlockPackageScript.run(redis, { lockKey, token });
  }
}

/** A completed job's outputs after its package was republished (captions); refused once it is no longer completed. */
export function replaceCompletedOutputs(
  redis: StateRedis,
  id: string,
  outputs: OutputKeys,
  nowMs: number,
): Promise<JobChange> {
  return changeJob(redis, replaceOutputsScript, {
    now: String(nowMs),
    jobKey: keys.job(id),
    state: S.completed,
    outputs: JSON.stringify(OutputKeys.parse(outputs)),
  });
}
