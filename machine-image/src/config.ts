/**
 * The machine's configuration: exactly the names the control plane gives it (`machineEnv`), the
 * id Fly sets, and optional tuning. Parsed once at boot; a missing or bad value stops the machine
 * with a message naming every offending variable, so a misconfigured image fails loudly instead of
 * claiming jobs it cannot finish.
 */
import { tmpdir } from "node:os";
import { join } from "node:path";
import { defaultVars, type MachineEnvName, machineEnv } from "@tcoder/worker/bindings";
import { z } from "zod";

const positiveInt = z.coerce.number().int().positive();

/** The `machineEnv` names, each with the rule the machine needs it to satisfy. */
const machineEnvSchema = {
  UPSTASH_REDIS_REST_URL: z.url(),
  UPSTASH_REDIS_REST_TOKEN: z.string().min(1),
  S3_ENDPOINT: z.url(),
  S3_REGION: z.string().min(1),
  S3_ACCESS_KEY_ID: z.string().min(1),
  S3_SECRET_ACCESS_KEY: z.string().min(1),
  INPUT_BUCKET: z.string().min(1),
  OUTPUT_BUCKET: z.string().min(1),
  OUTPUTS_BASE_URL: z.url(),
  CONTROL_PLANE_URL: z.url(),
  MACHINE_EVENTS_SECRET: z.string().min(16),
  JOB_LEASE_SECONDS: positiveInt,
  MACHINE_IDLE_STOP_SECONDS: positiveInt,
  // Absent only when an older control plane created the machine.
  CHUNK_SECONDS: z.coerce.number().int().nonnegative().default(Number(defaultVars.CHUNK_SECONDS)),
} satisfies Record<MachineEnvName, z.ZodType>;

export const configSchema = z.object({
  ...machineEnvSchema,
  FLY_MACHINE_ID: z.string().min(1),
  /** Scratch space for sources and packages; one sub-directory per attempt, removed afterwards. */
  WORK_DIR: z.string().min(1).default(join(tmpdir(), "tcoder-work")),
  /** Longest source accepted (default 4 h). */
  MAX_DURATION_SECONDS: positiveInt.default(4 * 60 * 60),
  /** Largest source frame accepted, in pixels (default 4096×2304). */
  MAX_PIXELS: positiveInt.default(4096 * 2304),
  /** x264 speed/quality trade-off; `veryfast` and faster are for tests and benchmarks. */
  X264_PRESET: z.enum(["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow"]).default("medium"),
  /** Parallel part uploads to the output bucket. */
  UPLOAD_CONCURRENCY: positiveInt.max(32).default(6),
  /**
   * First and longest wait between polls of an empty queue (full jitter: a wait is between half the
   * first and the longest). Short, so a job waits well under a second for a running machine; the
   * price is ~190 claims a minute while idle, and an idle machine stops (MACHINE_IDLE_STOP_SECONDS).
   */
  POLL_MIN_MS: positiveInt.default(250),
  POLL_MAX_MS: positiveInt.default(500),
  LOG_LEVEL: z.enum(["debug", "info", "warn", "error"]).default("info"),
});
export type Config = z.infer<typeof configSchema>;

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`tcoder machine: invalid configuration:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.name = "ConfigError";
  }
}

/** Parses `env`; throws a ConfigError listing every missing or bad variable. */
export function loadConfig(env: Record<string, string | undefined>): Config {
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ""));
  const parsed = configSchema.safeParse(present);
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.map((issue) => {
    const name = issue.path.join(".");
    return present[name] === undefined ? `${name} is missing` : `${name} is invalid: ${issue.message}`;
  });
  throw new ConfigError(problems);
}

/** The names a machine requires (for docs and the local runner). */
export const requiredEnv = [...machineEnv, "FLY_MACHINE_ID"] as const;
