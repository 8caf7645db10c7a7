/**
 * The local cloud: every service the control plane talks to, started in dependency order and
 * wired the way `infra/` wires the real ones — redis-server → Upstash REST bridge → S3 store
 * (R2 event notifications into the uploads queue) → Fly Machines API → the worker in workerd.
 */
import { randomBytes } from "node:crypto";
import { appendFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { S3Client } from "@aws-sdk/client-s3";
import {
  apiTokens,
  type BucketCorsRule,
  bucketCors,
  defaultVars,
  type SecretName,
  type Settings,
  secrets as secretDeclarations,
  settingsSchema,
  uploadNotification,
  type VarName,
} from "@tcoder/worker/bindings";
import type { R2EventNotification } from "@tcoder/worker/contract";
import { Redis } from "@upstash/redis";
import {
  type FlyApiFaults,
  type LocalFlyApi,
  type MachineRunner,
  noopRunner,
  processRunner,
  startFlyApi,
} from "./services/fly-api.ts";
import { freePort } from "./services/free-port.ts";
import { type RedisServer, startRedisServer } from "./services/redis-server.ts";
import { type S3Faults, type S3Store, startS3Store } from "./services/s3-store.ts";
import { startUpstashBridge, type UpstashBridge } from "./services/upstash-bridge.ts";
import { startWorkerRuntime, type WorkerRuntime } from "./services/worker-runtime.ts";

/** The local stack's own values; everything else comes from `defaultVars`. */
const localVars = {
  INPUT_BUCKET: "tcoder-inputs",
  OUTPUT_BUCKET: "tcoder-outputs",
  FLY_APP_NAME: "tcoder-machines",
  MACHINE_IMAGE: "tcoder-machine:local",
  ALLOW_INSECURE_CALLBACKS: "true",
  // Test and demo sources are served from this machine, as callbacks are delivered to it.
  ALLOW_LOOPBACK_SOURCE_URLS: "true",
} as const satisfies Partial<Record<VarName, string>>;
const localFlyOrg = "personal";

export interface LocalCloudPorts {
  redis?: number;
  upstash?: number;
  s3?: number;
  fly?: number;
  worker?: number;
}

export interface StartLocalCloudOptions {
  /** Holds redis data, S3 objects and the worker bundle; reuse it to keep state across restarts. */
  dir: string;
  /** MAX_MACHINES (overrides `vars.MAX_MACHINES`). */
  maxMachines?: number;
  /** Runs the machines the worker creates; default `noopRunner()` (machines that only idle). */
  runner?: MachineRunner;
  /**
   * Shortcut for `runner: processRunner({ command })`: every machine runs this program, its
   * output appended to `machineLogPath(dir, machineId)`.
   */
  machineCommand?: string[];
  /** Overrides of `defaultVars` and the local values; endpoints are always the local services' own. */
  vars?: Partial<Record<VarName, string>>;
  /** Fixed secrets (e.g. a known API_TOKEN for a CLI); the rest are generated. */
  secrets?: Partial<Record<SecretName, string>>;
  /** A prebuilt worker module; default builds the real one with `buildWorkerBundle()`. */
  workerScriptPath?: string;
  ports?: LocalCloudPorts;
  /** Runs the worker's scheduled handler this often (the local cron); off when unset. */
  cronIntervalMs?: number;
  flyFaults?: FlyApiFaults;
  /** Failures the object store injects from the start (change them later with `store.setFaults`). */
  s3Faults?: S3Faults;
  /**
   * Browser origins the buckets' CORS rules allow besides the worker's own (the web console's), as
   * `tcoder:corsOrigins` does in the cloud: a page on any other origin is refused as R2 would.
   */
  corsOrigins?: string[];
  /** Receives the worker's log lines; default appends them to `workerLogPath(dir)`. */
  workerLog?: (stream: "stdout" | "stderr", line: string) => void;
}

export interface LocalCloud {
  settings: Settings;
  /** Raw strings the worker is bound with (vars and secrets). */
  env: Record<VarName | SecretName, string>;
  /** The control-plane API (the worker over HTTP). */
  apiUrl: string;
  /** The first of the tokens `API_TOKEN` holds (several during a key rotation). */
  apiToken: string;
  /** @upstash/redis client on the bridge — the same view of state the worker has. */
  redis: Redis;
  s3: S3Client;
  fly: LocalFlyApi;
  worker: WorkerRuntime;
  redisServer: RedisServer;
  upstash: UpstashBridge;
  /** The object store itself (fault injection). */
  store: S3Store;
  /**
   * Stops redis-server (SIGKILL with `crash`, else a clean shutdown) and starts it again on the same
   * dir and port: what survives is what its AOF persistence kept. The bridge reconnects by itself.
   */
  restartRedis(opts?: { crash?: boolean; downForMs?: number }): Promise<void>;
  /**
   * Disposes workerd and starts the same bundle again on the same port, as a redeploy would. Queue
   * messages the local queues held in memory go with it; Redis state and objects stay.
   */
  restartWorker(): Promise<void>;
  /** Stops everything in reverse start order; no process is left behind. */
  stop(): Promise<void>;
}

/** Where the worker's console output goes unless `workerLog` says otherwise. */
export const workerLogPath = (dir: string) => join(dir, "worker.log");

/** Where a machine started through `machineCommand` writes its stdout and stderr. */
export const machineLogPath = (dir: string, machineId: string) => join(dir, "machines", `${machineId}.log`);

/** Random, URL-safe, 43 characters: comfortably above every minimum in settingsSchema. */
const generateSecret = () => randomBytes(32).toString("base64url");

export async function startLocalCloud(opts: StartLocalCloudOptions): Promise<LocalCloud> {
  const stoppers: (() => Promise<void>)[] = [];
  // Objects can be created before the worker is up; their events wait for it like a real queue
  // would. Once the cloud stops (or never got a worker), waiting events are dropped.
  let workerStarted: (runtime: WorkerRuntime | null) => void = () => {};
  const workerReady = new Promise<WorkerRuntime | null>((resolve) => {
    workerStarted = resolve;
  });
  let stopping = false;
  const stopAll = async () => {
    stopping = true;
    workerStarted(null);
    const failures: unknown[] = [];
    for (const stop of stoppers.splice(0).reverse()) {
      await stop().catch((err: unknown) => failures.push(err));
    }
    if (failures.length > 0) throw new AggregateError(failures, "local cloud: some services failed to stop");
  };

  try {
    const secrets = Object.fromEntries(
      (Object.keys(secretDeclarations) as SecretName[]).map((name) => [name, opts.secrets?.[name] ?? generateSecret()]),
    ) as Record<SecretName, string>;
    const chosen: Partial<Record<VarName, string>> = {
      ...defaultVars,
      ...localVars,
      ...opts.vars,
      ...(opts.maxMachines === undefined ? {} : { MAX_MACHINES: String(opts.maxMachines) }),
    };
    const inputBucket = chosen[uploadNotification.bucketVar] ?? localVars.INPUT_BUCKET;
    const outputBucket = chosen.OUTPUT_BUCKET ?? localVars.OUTPUT_BUCKET;
    const s3Region = chosen.S3_REGION ?? defaultVars.S3_REGION;
    const flyAppName = chosen.FLY_APP_NAME ?? localVars.FLY_APP_NAME;

    let redisServer = await startRedisServer({ dir: join(opts.dir, "redis"), port: opts.ports?.redis });
    stoppers.push(() => redisServer.stop());
    const upstash = await startUpstashBridge({
      redisUrl: redisServer.url,
      token: secrets.UPSTASH_REDIS_REST_TOKEN,
      port: opts.ports?.upstash,
    });
    stoppers.push(() => upstash.stop());

    let currentWorker: WorkerRuntime | undefined;
    const notifyUpload = async (bucket: string, event: R2EventNotification) => {
      if (bucket !== inputBucket) return;
      if (!event.object.key.startsWith(uploadNotification.prefix)) return;
      if (!(uploadNotification.actions as readonly string[]).includes(event.action)) return;
      const runtime = await workerReady;
      if (!runtime || stopping) return;
      await (currentWorker ?? runtime).sendToQueue(uploadNotification.queue, event);
    };

    // The worker's URL is known before it starts: the console it serves (by address or as
    // localhost) is an origin the buckets allow.
    const workerPort = opts.ports?.worker ?? (await freePort());
    const workerUrl = `http://127.0.0.1:${workerPort}`;
    const origins = [workerUrl, `http://localhost:${workerPort}`, ...(opts.corsOrigins ?? [])];
    const corsRule = (rule: BucketCorsRule) => [{ ...rule, origins }];

    const store = await startS3Store({
      dir: join(opts.dir, "s3"),
      port: opts.ports?.s3,
      credentials: { accessKeyId: secrets.S3_ACCESS_KEY_ID, secretAccessKey: secrets.S3_SECRET_ACCESS_KEY },
      region: s3Region,
      buckets: [inputBucket, outputBucket],
      publicReadBuckets: [outputBucket],
      cors: { [inputBucket]: corsRule(bucketCors.INPUT_BUCKET), [outputBucket]: corsRule(bucketCors.OUTPUT_BUCKET) },
      onObjectCreated: notifyUpload,
      ...(opts.s3Faults ? { faults: opts.s3Faults } : {}),
    });
    stoppers.push(() => store.stop());

    const fly = await startFlyApi({
      token: secrets.FLY_API_TOKEN,
      port: opts.ports?.fly,
      runner: opts.runner ?? (opts.machineCommand ? loggingProcessRunner(opts.dir, opts.machineCommand) : noopRunner()),
    });
    stoppers.push(() => fly.stop());
    const createdApp = await fetch(`${fly.url}/v1/apps`, {
      method: "POST",
      headers: { authorization: `Bearer ${fly.token}`, "content-type": "application/json" },
      body: JSON.stringify({ app_name: flyAppName, org_slug: localFlyOrg }),
    });
    if (createdApp.status !== 201) {
      throw new Error(`local cloud: creating Fly app ${flyAppName} answered ${createdApp.status}`);
    }
    // Benchmarks count the control plane's Fly calls, not the stack's own setup; faults are for
    // the control plane too, so they start once the app exists.
    fly.resetCalls();
    if (opts.flyFaults) fly.setFaults(opts.flyFaults);

    const vars = {
      ...chosen,
      S3_ENDPOINT: store.endpoint,
      S3_REGION: s3Region,
      OUTPUTS_BASE_URL: store.publicBaseUrl(outputBucket),
      UPSTASH_REDIS_REST_URL: upstash.url,
      FLY_API_BASE_URL: fly.url,
      CONTROL_PLANE_URL: workerUrl,
    } as Record<VarName, string>;
    const settings = settingsSchema.parse({ ...vars, ...secrets });

    const workerScriptPath = opts.workerScriptPath ?? (await buildWorker(opts.dir));
    const startWorker = () =>
      startWorkerRuntime({
        scriptPath: workerScriptPath,
        vars,
        secrets,
        port: workerPort,
        cronIntervalMs: opts.cronIntervalMs,
        log:
          opts.workerLog ??
          ((stream, line) => appendFileSync(workerLogPath(opts.dir), `${stream === "stderr" ? "! " : ""}${line}\n`)),
      });
    let worker = await startWorker();
    currentWorker = worker;
    stoppers.push(() => worker.stop());
    workerStarted(worker);

    const redis = new Redis({ url: upstash.url, token: upstash.token, enableTelemetry: false });
    const s3 = new S3Client({
      endpoint: store.endpoint,
      region: s3Region,
      forcePathStyle: true,
      credentials: { accessKeyId: secrets.S3_ACCESS_KEY_ID, secretAccessKey: secrets.S3_SECRET_ACCESS_KEY },
    });
    stoppers.push(async () => s3.destroy());

    const cloud: LocalCloud = {
      settings,
      env: { ...vars, ...secrets },
      apiUrl: worker.url,
      apiToken: apiTokens(secrets.API_TOKEN)[0] ?? "",
      redis,
      s3,
      fly,
      worker,
      redisServer,
      upstash,
      store,
      async restartRedis({ crash = false, downForMs = 0 } = {}) {
        await (crash ? redisServer.kill() : redisServer.stop());
        await new Promise((resolve) => setTimeout(resolve, downForMs));
        redisServer = await startRedisServer({ dir: join(opts.dir, "redis"), port: redisServer.port });
        cloud.redisServer = redisServer;
      },
      async restartWorker() {
        await worker.stop();
        worker = await startWorker();
        currentWorker = worker;
        cloud.worker = worker;
      },
      stop: stopAll,
    };
    return cloud;
  } catch (err) {
    await stopAll().catch(() => {});
    throw err;
  }
}

function loggingProcessRunner(dir: string, command: string[]): MachineRunner {
  mkdirSync(join(dir, "machines"), { recursive: true });
  return processRunner({
    command,
    log: (machineId, stream, line) =>
      appendFileSync(machineLogPath(dir, machineId), `${stream === "stderr" ? "! " : ""}${line}\n`),
  });
}

async function buildWorker(dir: string): Promise<string> {
  // Imported lazily: tests that bring their own worker module need neither esbuild nor the worker's sources.
  const { buildWorkerBundle } = await import("@tcoder/worker/bundle");
  const bundle = await buildWorkerBundle({ outDir: join(dir, "worker") });
  return bundle.path;
}
