/**
 * Events machines send to `POST /v1/machine-events`, signed with `MACHINE_EVENTS_SECRET`
 * (see signing.ts). `attempt` is the claim's attempt number: an event from an older attempt
 * (a machine that lost its lease) is refused with action `abort`.
 */
import { z } from "zod";
import { JobError, JobStage, OutputKeys, ProbeSummary } from "./job.ts";
import { SplitPlan, TaskResult } from "./tasks.ts";

export const MACHINE_EVENTS_PATH = "/v1/machine-events";

const base = {
  jobId: z.string().min(1).max(64),
  machineId: z.string().min(1).max(128),
  attempt: z.number().int().positive(),
  /**
   * Set when the event is about one task of a chunked job (contract/tasks.ts): `attempt` is then
   * the task's attempt, and the task's lease is the one checked and extended.
   */
  task: z
    .string()
    .regex(/^[a-z0-9]{1,16}$/)
    .optional(),
};

export const MachineEvent = z.discriminatedUnion("type", [
  z.object({ type: z.literal("claimed"), ...base }),
  z.object({ type: z.literal("progress"), ...base, progress: z.number().min(0).max(1), stage: JobStage }),
  z.object({ type: z.literal("heartbeat"), ...base }),
  z.object({
    type: z.literal("completed"),
    ...base,
    outputs: OutputKeys,
    probe: ProbeSummary,
    /** What the package costs to keep: its encoded duration, bytes and objects (manifest included). */
    usage: z
      .object({
        outputSeconds: z.number().nonnegative(),
        packageBytes: z.number().int().nonnegative(),
        objects: z.number().int().nonnegative(),
      })
      .optional(),
  }),
  z.object({
    type: z.literal("failed"),
    ...base,
    error: JobError,
    retryable: z.boolean().default(false),
    probe: ProbeSummary.optional(),
  }),
  /** The source is long: the job becomes these tasks, queued for every machine (sent instead of an outcome). */
  z.object({ type: z.literal("split"), ...base, plan: SplitPlan }),
  /** A task of a chunked job is done (the finalize task reports `completed` instead). */
  z.object({ type: z.literal("task_completed"), ...base, result: TaskResult }),
  /** The machine is shutting down (SIGTERM) and gives the job back to the queue unfinished. */
  z.object({ type: z.literal("released"), ...base, reason: z.string().max(200) }),
]);
export type MachineEvent = z.infer<typeof MachineEvent>;
export type MachineEventType = MachineEvent["type"];

/**
 * The control plane's answer. `abort`: the job was canceled or this attempt no longer holds the
 * lease; the machine stops ffmpeg and drops the work.
 */
export const MachineEventResponse = z.object({ ok: z.literal(true), action: z.enum(["continue", "abort"]) });
export type MachineEventResponse = z.infer<typeof MachineEventResponse>;
