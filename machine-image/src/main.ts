/**
 * Entry point of the machine image: configuration → loop → exit. Exit 0 means "idle, stop me"
 * (Fly starts the machine again on the next start call); anything else is a fault worth seeing.
 */
import { mkdir } from "node:fs/promises";
import { packageBucketVar } from "@tcoder/worker/contract";
import { claimNextJob } from "@tcoder/worker/state";
import { Redis } from "@upstash/redis";
import { publishLive } from "./chunked/live.ts";
import { dropCachedSources } from "./chunked/source-cache.ts";
import { ConfigError, loadConfig } from "./config.ts";
import { createControlPlane } from "./control-plane.ts";
import { type Logger, runMachineLoop } from "./loop.ts";
import { createS3Client } from "./storage/s3.ts";
import { transcodeJob } from "./transcode.ts";

const levels = { debug: 10, info: 20, warn: 30, error: 40 } as const;

async function main(): Promise<number> {
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig(process.env);
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(error.message);
      return 2;
    }
    throw error;
  }
  const minLevel = levels[config.LOG_LEVEL];
  const log: Logger = (level, message, fields) => {
    if (levels[level] < minLevel) return;
    const line = JSON.stringify({
      time: new Date().toISOString(),
      level,
      machineId: config.FLY_MACHINE_ID,
      message,
      ...fields,
    });
    (level === "error" || level === "warn" ? console.error : console.log)(line);
  };

  const shutdown = new AbortController();
  for (const signal of ["SIGTERM", "SIGINT"] as const)
    process.once(signal, () => {
      log("info", `${signal}: stopping`);
      shutdown.abort();
    });

  await mkdir(config.WORK_DIR, { recursive: true });
  const redis = new Redis({ url: config.UPSTASH_REDIS_REST_URL, token: config.UPSTASH_REDIS_REST_TOKEN });
  const s3 = createS3Client({
    endpoint: config.S3_ENDPOINT,
    region: config.S3_REGION,
    accessKeyId: config.S3_ACCESS_KEY_ID,
    secretAccessKey: config.S3_SECRET_ACCESS_KEY,
  });
  const controlPlane = createControlPlane({ baseUrl: config.CONTROL_PLANE_URL, secret: config.MACHINE_EVENTS_SECRET });

  // The control plane's cron stops machines idle for MACHINE_IDLE_STOP_SECONDS; exiting on our own is
  // the fallback for when it cannot (cron or Fly API down), so it waits a lease longer and never races it.
  const idleExitSeconds = config.MACHINE_IDLE_STOP_SECONDS + config.JOB_LEASE_SECONDS;
  log("info", "machine started", { leaseSeconds: config.JOB_LEASE_SECONDS, idleExitSeconds });
  const exit = await runMachineLoop({
    machineId: config.FLY_MACHINE_ID,
    leaseSeconds: config.JOB_LEASE_SECONDS,
    idleStopSeconds: idleExitSeconds,
    pollMinMs: config.POLL_MIN_MS,
    pollMaxMs: config.POLL_MAX_MS,
    claim: () => claimNextJob(redis, { machineId: config.FLY_MACHINE_ID, leaseSeconds: config.JOB_LEASE_SECONDS }),
    controlPlane,
    shutdown: shutdown.signal,
    log,
    afterTask: (claim) => publishLive({ redis, s3, bucketOf: (bucketVar) => config[bucketVar] }, claim.jobId),
    runJob: (job, { signal, onProgress, confirmLease }) =>
      transcodeJob(job, {
        s3,
        inputBucket: config.INPUT_BUCKET,
        // A signed job's package goes where nothing is publicly readable (contract/playback.ts).
        outputBucket: config[packageBucketVar(job.playback ?? "public")],
        workDir: config.WORK_DIR,
        limits: { maxDurationSeconds: config.MAX_DURATION_SECONDS, maxPixels: config.MAX_PIXELS },
        x264Preset: config.X264_PRESET,
        uploadConcurrency: config.UPLOAD_CONCURRENCY,
        chunkSeconds: config.CHUNK_SECONDS,
        signal,
        onProgress,
        confirmLease,
        log: (message, fields) => log("warn", message, { jobId: job.jobId, ...fields }),
      }),
  });
  log("info", "machine exiting", exit);
  await dropCachedSources(config.WORK_DIR);
  s3.destroy();
  return 0;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error instanceof Error ? (error.stack ?? error.message) : String(error));
    process.exit(1);
  },
);
