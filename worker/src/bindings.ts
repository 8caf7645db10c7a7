/**
 * The single declaration of what the control-plane worker is bound to.
 *
 * `infra/` turns this into `WorkersScript` bindings, queue consumers and cron triggers;
 * `stacks/local` turns it into Miniflare options; the worker derives its `Env` type from it.
 * Renaming or adding a binding here changes all three.
 */
import { z } from "zod";
import { MAX_SINGLE_UPLOAD_BYTES } from "./contract/object-store.ts";

/** Plain-text settings: safe to show in a `pulumi preview` diff. */
export const vars = {
  /** Bucket the presigned uploads land in (`inputs/<jobId>/<name>`). */
  INPUT_BUCKET: { description: "R2 bucket for uploaded sources", example: "tcoder-inputs" },
  /** Bucket the machines publish packages to (`outputs/<jobId>/`). */
  OUTPUT_BUCKET: { description: "R2 bucket for transcoded outputs", example: "tcoder-outputs" },
  /** S3 API endpoint of the object store (R2: https://<account>.r2.cloudflarestorage.com). */
  S3_ENDPOINT: { description: "S3-compatible endpoint", example: "https://acc.r2.cloudflarestorage.com" },
  S3_REGION: { description: "S3 signing region (R2: auto)", example: "auto" },
  /** Public base URL players read outputs from; job records carry `${OUTPUTS_BASE_URL}/${key}`. */
  OUTPUTS_BASE_URL: { description: "Public read URL of the output bucket", example: "https://media.example.com" },
  UPSTASH_REDIS_REST_URL: { description: "Upstash Redis REST URL", example: "https://x.upstash.io" },
  FLY_API_BASE_URL: { description: "Fly Machines API base URL", example: "https://api.machines.dev" },
  FLY_APP_NAME: { description: "Fly app that owns the transcoding machines", example: "tcoder-machines" },
  FLY_REGION: { description: "Fly region machines are created in", example: "iad" },
  MACHINE_IMAGE: { description: "Image reference machines run", example: "registry.fly.io/tcoder-machines@sha256:…" },
  MACHINE_CPU_KIND: { description: "Fly guest cpu_kind", example: "performance" },
  MACHINE_CPUS: { description: "Fly guest cpus", example: "2" },
  MACHINE_MEMORY_MB: { description: "Fly guest memory in MB", example: "4096" },
  MAX_MACHINES: { description: "Cap on machines in the pool", example: "3" },
  MACHINE_IDLE_STOP_SECONDS: { description: "Stop a machine this long after it last finished a job", example: "300" },
  JOB_LEASE_SECONDS: { description: "A claim is lost when not extended for this long", example: "60" },
  JOB_MAX_ATTEMPTS: { description: "Attempts before a job fails with lease_expired", example: "3" },
  /** Sources over three chunks are encoded in chunks of this length on every machine at once (contract/tasks.ts). */
  CHUNK_SECONDS: {
    description:
      "Chunk length of parallel encoding, for sources over 3 chunks (a multiple of the segment length; 0: never)",
    example: "30",
  },
  UPLOAD_EXPIRY_SECONDS: { description: "awaiting_upload jobs expire after this long", example: "3600" },
  MAX_UPLOAD_BYTES: { description: "Largest accepted upload", example: "5368709120" },
  /** Above this a source goes up in parts: well under the store's single-PUT limit (R2: 4.995 GiB). */
  SINGLE_PUT_MAX_BYTES: {
    description: "Largest upload given one presigned PUT; larger ones use multipart",
    example: "1073741824",
  },
  DEFAULT_PRESET: { description: "Preset used when a request names none", example: "hls-ladder" },
  /** Where machines post their signed events: the worker's own public URL. */
  CONTROL_PLANE_URL: { description: "Public URL of this worker", example: "https://tcoder.example.workers.dev" },
  /** "true" only in stacks that deliver callbacks to plain-http or private addresses (local). */
  ALLOW_INSECURE_CALLBACKS: { description: "Allow http:// and private callback targets", example: "false" },
  /** "true" only in the local stack: source URLs may be http:// and loopback (never other private ranges). */
  ALLOW_LOOPBACK_SOURCE_URLS: { description: "Allow http:// and loopback source URLs", example: "false" },
  LOG_LEVEL: { description: "debug | info | warn | error", example: "info" },
  /** Prices `GET /v1/stats` estimates cost with (docs/cloud.md says where the defaults come from). */
  PRICE_MACHINE_SECOND_USD: {
    description: "Fly price per second of the configured machine size",
    example: "0.0000239",
  },
  PRICE_STORAGE_GB_MONTH_USD: { description: "R2 storage price per GB-month", example: "0.015" },
  PRICE_CLASS_A_MILLION_USD: { description: "R2 Class A (write, list) operations per million", example: "4.50" },
  PRICE_CLASS_B_MILLION_USD: { description: "R2 Class B (read) operations per million", example: "0.36" },
} as const;

/** Secret settings: bound as `secret_text`, never plain text, never logged. */
export const secrets = {
  /** Several tokens, comma-separated, while a new one is rolled out and before the old one is removed. */
  API_TOKEN: { description: "Bearer token(s) clients send to the API, comma-separated during a rotation" },
  UPSTASH_REDIS_REST_TOKEN: { description: "Upstash REST token" },
  S3_ACCESS_KEY_ID: { description: "S3 access key for the buckets (R2 token id)" },
  S3_SECRET_ACCESS_KEY: { description: "S3 secret key (SHA-256 of the R2 token value)" },
  FLY_API_TOKEN: { description: "Fly Machines API token" },
  MACHINE_EVENTS_SECRET: { description: "HMAC key machines sign their events with" },
  CALLBACK_SIGNING_SECRET: { description: "HMAC key for callbacks to clients' callbackUrl" },
  /** Signs the expiring tokens of signed-playback URLs (contract/playback.ts); apps may hold it to sign offline. */
  PLAYBACK_SIGNING_SECRET: { description: "HMAC key for signed playback tokens" },
} as const;

/** Queues the worker consumes. The uploads queue is fed by the R2 event notification rule. */
export const queues = {
  uploads: {
    name: "tcoder-uploads",
    deadLetterQueue: "tcoder-uploads-dlq",
    maxBatchSize: 10,
    // No batch window (Cloudflare allows 0–60 s): every upload waits for it before its job is
    // queued, and a burst still arrives in batches of what is there when the consumer is invoked.
    maxBatchTimeoutSeconds: 0,
    maxRetries: 5,
  },
  /** Client callbacks: a message per terminal job, retried with backoff, then given up on. */
  callbacks: {
    name: "tcoder-callbacks",
    deadLetterQueue: "tcoder-callbacks-dlq",
    maxBatchSize: 10,
    maxBatchTimeoutSeconds: 1,
    maxRetries: 8,
  },
} as const;

/** The prefix the declared queue names carry: the local stack's. */
const declaredQueuePrefix = "tcoder";

/**
 * A queue's name in a stack whose names start with `prefix` (`tcoder-uploads` → `tcoder-dev-uploads`):
 * queue names are account-wide on Cloudflare, so two stacks in one account need their own.
 */
export function stackQueueName(prefix: string, declaredName: string): string {
  return `${prefix}${declaredName.slice(declaredQueuePrefix.length)}`;
}

/** The declared queue a batch came from, whatever prefix its stack gave it. */
export function queueKeyOf(queueName: string): keyof typeof queues | undefined {
  return (Object.keys(queues) as (keyof typeof queues)[]).find((key) =>
    queueName.endsWith(queues[key].name.slice(declaredQueuePrefix.length)),
  );
}

/** Producer bindings (name in `env` → queue). */
export const queueProducers = {
  CALLBACKS_QUEUE: queues.callbacks.name,
} as const;

/** The R2 event notification rule that feeds the uploads queue. */
export const uploadNotification = {
  bucketVar: "INPUT_BUCKET",
  prefix: "inputs/",
  actions: ["PutObject", "CompleteMultipartUpload", "CopyObject"],
  queue: queues.uploads.name,
} as const;

/** One CORS rule of a bucket, in the S3 `CORSRule` shape R2 takes; the allowed origins are a stack setting. */
export interface BucketCorsRule {
  id: string;
  methods: readonly ("GET" | "HEAD" | "PUT" | "POST" | "DELETE")[];
  /** Request headers a browser may send (matched case-insensitively). */
  headers: readonly string[];
  /** Response headers scripts may read. */
  exposeHeaders: readonly string[];
  maxAgeSeconds: number;
}

/**
 * What browsers may do with each bucket, from the origins a stack allows (`tcoder:corsOrigins` in
 * the cloud; the local stack allows its own console). Browsers PUT sources straight to presigned
 * URLs, with the content type and length those URLs sign, and read the part ETags back for
 * multipart completion; players GET outputs, with Range for byte-range HLS and MP4 seeking. `infra/`
 * deploys these as the buckets' R2 CORS rules and the local store enforces the same ones.
 */
export const bucketCors = {
  INPUT_BUCKET: {
    id: "browser-upload",
    methods: ["PUT"],
    headers: ["content-type", "content-length"],
    exposeHeaders: ["ETag"],
    maxAgeSeconds: 3600,
  },
  OUTPUT_BUCKET: {
    id: "player-read",
    methods: ["GET", "HEAD"],
    headers: ["range"],
    exposeHeaders: ["Content-Length", "Content-Range", "ETag"],
    maxAgeSeconds: 3600,
  },
} as const satisfies Record<"INPUT_BUCKET" | "OUTPUT_BUCKET", BucketCorsRule>;

/** Cron triggers: idle-machine stop, lease recovery, upload expiry. */
export const crons = ["* * * * *"] as const;

export const compatibilityDate = "2025-04-01";
export const compatibilityFlags = ["nodejs_compat"] as const;

export type VarName = keyof typeof vars;
export type SecretName = keyof typeof secrets;
export type QueueProducerName = keyof typeof queueProducers;

/** The worker's `env`, derived from the declarations above. */
export type Env = { [K in VarName]: string } & { [K in SecretName]: string } & {
  [K in QueueProducerName]: Queue<unknown>;
};

/** Minimal structural Queue type so this module does not depend on workers-types. */
export interface Queue<Body> {
  send(body: Body, options?: { delaySeconds?: number; contentType?: string }): Promise<void>;
}

const seconds = z.coerce.number().int().positive();

/** Shortest bearer token the API accepts in `API_TOKEN`. */
export const MIN_API_TOKEN_LENGTH = 16;

/**
 * The tokens an `API_TOKEN` value holds: one, or several separated by commas (a rotation in
 * progress). Spaces around each are ignored; tokens never contain commas or spaces.
 */
export const apiTokens = (raw: string): string[] =>
  raw
    .split(",")
    .map((token) => token.trim())
    .filter((token) => token.length > 0);
const bool = z.enum(["true", "false"]).transform((v) => v === "true");
const price = z.coerce.number().nonnegative();

/** Typed settings parsed from `env` once per request; a missing or bad value names itself. */
export const settingsSchema = z.object({
  INPUT_BUCKET: z.string().min(1),
  OUTPUT_BUCKET: z.string().min(1),
  S3_ENDPOINT: z.url(),
  S3_REGION: z.string().min(1).default("auto"),
  OUTPUTS_BASE_URL: z.url(),
  UPSTASH_REDIS_REST_URL: z.url(),
  FLY_API_BASE_URL: z.url(),
  FLY_APP_NAME: z.string().min(1),
  FLY_REGION: z.string().min(1),
  MACHINE_IMAGE: z.string().min(1),
  MACHINE_CPU_KIND: z.enum(["shared", "performance"]).default("performance"),
  MACHINE_CPUS: z.coerce.number().int().min(1).max(16),
  MACHINE_MEMORY_MB: z.coerce.number().int().min(256),
  MAX_MACHINES: z.coerce.number().int().min(1).max(100),
  MACHINE_IDLE_STOP_SECONDS: seconds,
  JOB_LEASE_SECONDS: seconds,
  JOB_MAX_ATTEMPTS: z.coerce.number().int().min(1).max(20),
  CHUNK_SECONDS: z.coerce.number().int().min(0).max(3600),
  UPLOAD_EXPIRY_SECONDS: seconds,
  MAX_UPLOAD_BYTES: z.coerce.number().int().positive(),
  SINGLE_PUT_MAX_BYTES: z.coerce.number().int().positive().max(MAX_SINGLE_UPLOAD_BYTES),
  DEFAULT_PRESET: z.string().min(1),
  CONTROL_PLANE_URL: z.url(),
  ALLOW_INSECURE_CALLBACKS: bool.default(false),
  ALLOW_LOOPBACK_SOURCE_URLS: bool.default(false),
  LOG_LEVEL: z.enum(["debug", "info", "warn", "error"]).default("info"),
  PRICE_MACHINE_SECOND_USD: price,
  PRICE_STORAGE_GB_MONTH_USD: price,
  PRICE_CLASS_A_MILLION_USD: price,
  PRICE_CLASS_B_MILLION_USD: price,
  API_TOKEN: z
    .string()
    .refine(
      (raw) => apiTokens(raw).length > 0 && apiTokens(raw).every((token) => token.length >= MIN_API_TOKEN_LENGTH),
      `one or more comma-separated tokens of at least ${MIN_API_TOKEN_LENGTH} characters`,
    ),
  UPSTASH_REDIS_REST_TOKEN: z.string().min(1),
  S3_ACCESS_KEY_ID: z.string().min(1),
  S3_SECRET_ACCESS_KEY: z.string().min(1),
  FLY_API_TOKEN: z.string().min(1),
  MACHINE_EVENTS_SECRET: z.string().min(16),
  CALLBACK_SIGNING_SECRET: z.string().min(16),
  PLAYBACK_SIGNING_SECRET: z.string().min(16),
});
export type Settings = z.infer<typeof settingsSchema>;

/** A misconfigured environment; the message names the settings, never their values. */
export class SettingsError extends Error {
  constructor(readonly names: string[]) {
    super(`missing or invalid setting(s): ${names.join(", ")}`);
    this.name = "SettingsError";
  }
}

/** Parses the worker's env into typed settings, or throws a SettingsError naming what is wrong. */
export function parseSettings(env: Record<string, unknown>): Settings {
  const result = settingsSchema.safeParse(env);
  if (result.success) return result.data;
  throw new SettingsError([...new Set(result.error.issues.map((issue) => String(issue.path[0] ?? "?")))].sort());
}

/**
 * Defaults every stack starts from; a stack overrides what differs (endpoints, cap, secrets).
 * Pulumi stack config and `stacks/local` both start here so their differences are explicit.
 */
export const defaultVars = {
  S3_REGION: "auto",
  FLY_REGION: "iad",
  MACHINE_CPU_KIND: "performance",
  MACHINE_CPUS: "2",
  MACHINE_MEMORY_MB: "4096",
  MAX_MACHINES: "3",
  MACHINE_IDLE_STOP_SECONDS: "300",
  JOB_LEASE_SECONDS: "60",
  JOB_MAX_ATTEMPTS: "3",
  CHUNK_SECONDS: "30",
  UPLOAD_EXPIRY_SECONDS: "3600",
  MAX_UPLOAD_BYTES: String(5 * 1024 ** 3),
  SINGLE_PUT_MAX_BYTES: String(1024 ** 3),
  DEFAULT_PRESET: "hls-ladder",
  ALLOW_INSECURE_CALLBACKS: "false",
  ALLOW_LOOPBACK_SOURCE_URLS: "false",
  LOG_LEVEL: "info",
  // Fly performance-2x with 4 GB (the default size above) and R2 Standard, list prices in USD.
  PRICE_MACHINE_SECOND_USD: "0.0000239",
  PRICE_STORAGE_GB_MONTH_USD: "0.015",
  PRICE_CLASS_A_MILLION_USD: "4.50",
  PRICE_CLASS_B_MILLION_USD: "0.36",
} as const satisfies Partial<Record<VarName, string>>;

/**
 * Environment names the control plane gives each machine it creates; the machine-image reads
 * exactly these (and fails fast naming any that is missing).
 */
export const machineEnv = [
  "UPSTASH_REDIS_REST_URL",
  "UPSTASH_REDIS_REST_TOKEN",
  "S3_ENDPOINT",
  "S3_REGION",
  "S3_ACCESS_KEY_ID",
  "S3_SECRET_ACCESS_KEY",
  "INPUT_BUCKET",
  "OUTPUT_BUCKET",
  "OUTPUTS_BASE_URL",
  "CONTROL_PLANE_URL",
  "MACHINE_EVENTS_SECRET",
  "JOB_LEASE_SECONDS",
  "MACHINE_IDLE_STOP_SECONDS",
  "CHUNK_SECONDS",
] as const satisfies readonly (VarName | SecretName)[];
export type MachineEnvName = (typeof machineEnv)[number];
