/**
 * The request shapes of the local Fly Machines API (fly-go `LaunchMachineInput`, `StopMachineInput`,
 * `CreateAppRequest` and the list and wait queries) as zod schemas, and Fly's error answer.
 */
import { z } from "zod";

/** An answer Fly gives as `{"error": "...", "status": "..."}` with an HTTP status. */
export class FlyError extends Error {
  constructor(
    readonly status: 400 | 401 | 404 | 408 | 409 | 412 | 422 | 429 | 500,
    message: string,
    /** fly-go's `StatusCode` (e.g. `name_taken`), when Fly sends one. */
    readonly flyStatus?: string,
  ) {
    super(message);
  }
}

const duration = z.union([z.string(), z.number()]);
const signal = z.string().regex(/^SIG[A-Z0-9]+$/);

export const machineConfigSchema = z.looseObject({
  image: z.string().min(1),
  env: z.record(z.string(), z.string()).optional(),
  guest: z
    .looseObject({
      cpu_kind: z.string().optional(),
      cpus: z.number().int().positive().optional(),
      memory_mb: z.number().int().positive().optional(),
    })
    .optional(),
  restart: z
    .looseObject({
      policy: z.enum(["no", "always", "on-failure"]).optional(),
      max_retries: z.number().int().nonnegative().optional(),
    })
    .optional(),
  auto_destroy: z.boolean().optional(),
  metadata: z.record(z.string(), z.string()).optional(),
  stop_config: z.looseObject({ signal: signal.optional(), timeout: duration.optional() }).optional(),
});

export const launchMachineSchema = z.looseObject({
  name: z.string().min(1).optional(),
  region: z.string().min(1).optional(),
  config: machineConfigSchema,
  skip_launch: z.boolean().optional(),
});
export type LaunchMachineInput = z.infer<typeof launchMachineSchema>;

export const createAppSchema = z.looseObject({
  app_name: z.string().optional(),
  name: z.string().optional(),
  org_slug: z.string().min(1),
  network: z.string().optional(),
});

export const stopMachineSchema = z.looseObject({ signal: signal.optional(), timeout: duration.optional() });

/** `?state=a,b&state=c` as one list. */
const stateList = z
  .array(z.string())
  .optional()
  .transform((values) => (values ?? []).flatMap((v) => v.split(",")).filter(Boolean));

/** `GET /machines`: include_deleted, region, state and `metadata.{key}=value` filters. */
export const listMachinesQuery = z.object({
  include_deleted: z.array(z.string()).optional(),
  region: z.array(z.string()).optional(),
  state: stateList,
});

/** `GET .../{id}/wait` accepts these target states. */
export const waitableStates = ["started", "stopped", "destroyed"] as const;
/** Fly's proxy ends a wait after 60 s; the API caps `timeout` there. */
export const maxWaitSeconds = 60;

export const waitQuery = z.object({
  state: stateList.pipe(z.array(z.enum(waitableStates))).transform((s) => (s.length > 0 ? s : ["started" as const])),
  instance_id: z.array(z.string()).optional(),
  timeout: z.array(z.coerce.number().nonnegative()).optional(),
});

/** Parses `input` or throws Fly's 400 naming the first field that is wrong. */
export function parse<S extends z.ZodType>(schema: S, input: unknown, what = "request body"): z.infer<S> {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  throw new FlyError(400, `invalid ${what}: ${issue?.path.join(".") || "body"}: ${issue?.message ?? "invalid"}`);
}

/** Fly durations come as Go strings ("10s", "500ms", "1m"); a bare number is seconds. */
export function parseDurationMs(value: string | number | undefined, fallbackMs: number): number {
  if (value === undefined) return fallbackMs;
  if (typeof value === "number") return value * 1000;
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(value.trim());
  if (!match?.[1]) throw new FlyError(400, `invalid duration "${value}"`);
  const units = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;
  return Number(match[1]) * units[(match[2] ?? "s") as keyof typeof units];
}
