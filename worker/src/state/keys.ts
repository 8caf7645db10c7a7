/**
 * Every Redis key tcoder uses, and the object-key layout of uploads. Nothing else spells a key.
 *
 * Layout (prefix `tcoder:`):
 * - `tcoder:job:<id>`               hash, one per job (fields listed in jobs.ts; times in ms)
 * - `tcoder:jobs:all`               zset id → createdAt ms (listing, newest first)
 * - `tcoder:jobs:state:<state>`     zset id → createdAt ms, one per job state (listing by state, stats)
 * - `tcoder:queue`                  zset id → enqueue time ms; popped with ZPOPMIN by the claim script
 * - `tcoder:leases`                 zset id → leaseExpiresAt ms of running jobs (lease recovery)
 * - `tcoder:upload-deadlines`       zset id → uploadExpiresAt ms of awaiting_upload jobs (expiry)
 * - `tcoder:purges`                 zset id → ms after which a deleted job's objects are (again) to
 *                                   be removed from the buckets; left once they are confirmed gone
 * - `tcoder:machine:<id>`           hash, one per machine (fields listed in pool.ts)
 * - `tcoder:machines`               set of machine ids in the pool
 * - `tcoder:machine-reservations`   zset reservation token → expiry ms: slots held by admission
 *                                   while it creates a machine through the Fly API
 * - `tcoder:admission`              hash: the last Fly failure admission saw (`lastError`,
 *                                   `lastErrorStatus`, `lastErrorAt`), shown in stats
 * - `tcoder:usage:hour:<ms>`        hash per hour (start in epoch ms): `machineSeconds`, `attempts`,
 *                                   `jobsCompleted`, `outputSeconds`, `objectsWritten`, `bytesWritten`,
 *                                   counted when an attempt ends or a job completes; expires after 32 days
 * - `tcoder:usage:stored-bytes`     integer: bytes completed jobs keep stored (source + package),
 *                                   less what deleting them removed
 * - `tcoder:job-package-lock:<id>`  string token, expiring: held while the API republishes a finished
 *                                   job's package (captions added or removed) or a chunked job's live
 *                                   playlists, one change at a time
 * - `tcoder:task:<id>/<task>`       hash, one per task of a chunked job (fields listed in tasks.ts);
 *                                   the queue and the leases hold `<id>/<task>` for it
 *
 * Scripts receive fixed keys as KEYS and the per-id prefixes below in their config, so a key name
 * is still only ever built from this file.
 */
const prefix = "tcoder:";

export const keys = {
  jobPrefix: `${prefix}job:`,
  job: (id: string) => `${prefix}job:${id}`,
  allJobs: `${prefix}jobs:all`,
  jobsInStatePrefix: `${prefix}jobs:state:`,
  jobsInState: (state: string) => `${prefix}jobs:state:${state}`,
  queue: `${prefix}queue`,
  leases: `${prefix}leases`,
  uploadDeadlines: `${prefix}upload-deadlines`,
  purges: `${prefix}purges`,
  machinePrefix: `${prefix}machine:`,
  machine: (id: string) => `${prefix}machine:${id}`,
  machines: `${prefix}machines`,
  machineReservations: `${prefix}machine-reservations`,
  admission: `${prefix}admission`,
  usageHourPrefix: `${prefix}usage:hour:`,
  usageHour: (hourStartMs: number) => `${prefix}usage:hour:${hourStartMs}`,
  storedBytes: `${prefix}usage:stored-bytes`,
  packageLock: (id: string) => `${prefix}job-package-lock:${id}`,
  taskPrefix: `${prefix}task:`,
  task: (taskId: string) => `${prefix}task:${taskId}`,
} as const;

/** Uploaded sources live at `inputs/<jobId>/<name>` in the input bucket. */
export const INPUT_KEY_PREFIX = "inputs/";

/** Object key of a job's uploaded source; `safeName` must already be sanitized (no `/`). */
export const inputKeyFor = (jobId: string, safeName: string): string => `${INPUT_KEY_PREFIX}${jobId}/${safeName}`;

/** Every object of a job's source lives under this prefix of the input bucket. */
export const inputPrefixFor = (jobId: string): string => `${INPUT_KEY_PREFIX}${jobId}/`;

/**
 * Machines publish packages under `outputs/<jobId>/<attempt>/` and `outputs/<jobId>/manifest.json`
 * (machine-image/src/package/layout.ts); deleting a job removes everything under this prefix.
 */
export const OUTPUT_KEY_PREFIX = "outputs/";
export const outputPrefixFor = (jobId: string): string => `${OUTPUT_KEY_PREFIX}${jobId}/`;

/** The job an uploaded object belongs to, or null for keys outside `inputs/<jobId>/<name>`. */
export function jobIdFromInputKey(key: string): string | null {
  if (!key.startsWith(INPUT_KEY_PREFIX)) return null;
  const rest = key.slice(INPUT_KEY_PREFIX.length);
  const slash = rest.indexOf("/");
  if (slash <= 0 || slash === rest.length - 1) return null;
  return rest.slice(0, slash);
}

/** Usage is counted in hourly buckets; this is the start (epoch ms) of the hour `ms` falls in. */
export const HOUR_MS = 3_600_000;
export const hourStart = (ms: number): number => Math.floor(ms / HOUR_MS) * HOUR_MS;
/** Hourly usage buckets outlive the longest window the stats sum (30 days) by two days. */
export const USAGE_TTL_SECONDS = 32 * 24 * 3600;
