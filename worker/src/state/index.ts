/**
 * `@tcoder/worker/state`: jobs, the queue and the machine pool in Redis. Machines use only
 * `claimNextJob`; the worker uses the rest.
 */
export * from "./jobs.ts";
export * from "./keys.ts";
export * from "./pool.ts";
export type { StateRedis } from "./script.ts";
export { markLive, readTasks, type StoredTask, taskWeight, withLivePasses } from "./tasks.ts";
