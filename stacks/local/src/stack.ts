/**
 * The local stack as the CLI runs it: the local cloud with real machines (the machine-image
 * program as processes, or the built image as containers), a fast local cron, state under one
 * directory and stable secrets, so a restart keeps jobs, objects and the API token.
 */

import { randomBytes } from "node:crypto";
import { chmod, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { SecretName, VarName } from "@tcoder/worker/bindings";
import { secrets as secretDeclarations } from "@tcoder/worker/bindings";
import { type LocalCloud, startLocalCloud } from "./local-cloud.ts";
import { containerRunner } from "./services/fly/container-runner.ts";
import { processRunner } from "./services/fly/runners.ts";
import type { FlyApiFaults } from "./services/fly-api.ts";
import { ensureMachineBundle } from "./services/machine-bundle.ts";
import { ensureMachineImage, machineImageRef } from "./services/machine-image.ts";
import type { S3Faults } from "./services/s3-store.ts";

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");

/** Where a running stack announces itself to other CLI invocations. */
export interface StackFile {
  apiUrl: string;
  apiToken: string;
  pid: number;
  startedAt: string;
}

export type LogSource = "api" | "queue" | "cron" | "stack" | `machine ${string}`;

/**
 * What runs a machine: `process` runs the machine program (bundled as the image bundles it) as a
 * Node process (fast, the default); `container` runs the image built from machine-image/Dockerfile (`npm run image:build`,
 * built on first use) as a podman container with the guest's cores and memory.
 */
export const runnerKinds = ["process", "container"] as const;
export type RunnerKind = (typeof runnerKinds)[number];
export type StackLogger = (source: LogSource, line: string, level?: "info" | "debug") => void;

export interface StartLocalStackOptions {
  dir: string;
  fresh?: boolean;
  maxMachines?: number;
  /** Port of the API (the worker); others are chosen free. */
  port?: number;
  /** Default `process`. */
  runner?: RunnerKind;
  log?: StackLogger;
  /** Local cron cadence; the deployed cron runs every minute. */
  cronIntervalMs?: number;
  vars?: Partial<Record<VarName, string>>;
  /** Extra machine environment (tuning such as X264_PRESET); the control plane's own names win. */
  machineEnv?: Record<string, string>;
  flyFaults?: FlyApiFaults;
  s3Faults?: S3Faults;
  /** A prebuilt worker module (tests starting several stacks build it once). */
  workerScriptPath?: string;
}

export interface LocalStack {
  cloud: LocalCloud;
  dir: string;
  /** SIGKILLs a machine's program (default signal), as a VM crash would; false if it was not running. */
  killMachine(machineId: string, signal?: NodeJS.Signals): Promise<boolean>;
  stop(): Promise<void>;
}

/** Local defaults that differ from a deployment only in cadence: machines stop sooner when idle. */
const localStackVars = {
  MACHINE_IDLE_STOP_SECONDS: "30",
  JOB_LEASE_SECONDS: "30",
} as const satisfies Partial<Record<VarName, string>>;

export async function startLocalStack(opts: StartLocalStackOptions): Promise<LocalStack> {
  const dir = resolve(opts.dir);
  if (opts.fresh) await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const log = opts.log ?? (() => {});
  const secrets = await loadOrCreateSecrets(join(dir, "secrets.json"));
  const machineLog = (machineId: string, _stream: "stdout" | "stderr", line: string) =>
    log(`machine ${machineId}`, line);
  let runner: ReturnType<typeof processRunner> | ReturnType<typeof containerRunner>;
  let imageVars: Partial<Record<VarName, string>> = {};
  if (opts.runner === "container") {
    const image = await ensureMachineImage({ log: (line) => log("stack", line, "debug") });
    log("stack", `machines run as containers of ${image.ref} (${image.built ? "built now" : "up to date"})`);
    runner = containerRunner({ ...(opts.machineEnv ? { env: opts.machineEnv } : {}), log: machineLog });
    imageVars = { MACHINE_IMAGE: machineImageRef };
  } else {
    runner = processRunner({
      command: [process.execPath, "--enable-source-maps", await ensureMachineBundle(repoRoot)],
      cwd: repoRoot,
      env: {
        AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true",
        ...opts.machineEnv,
        WORK_DIR: join(dir, "machines"),
      },
      log: machineLog,
    });
  }
  const cloud = await startLocalCloud({
    dir,
    runner,
    secrets,
    vars: { ...localStackVars, ...imageVars, ...opts.vars },
    ...(opts.maxMachines === undefined ? {} : { maxMachines: opts.maxMachines }),
    ports: opts.port === undefined ? {} : { worker: opts.port },
    cronIntervalMs: opts.cronIntervalMs ?? 5_000,
    ...(opts.flyFaults ? { flyFaults: opts.flyFaults } : {}),
    ...(opts.s3Faults ? { s3Faults: opts.s3Faults } : {}),
    ...(opts.workerScriptPath ? { workerScriptPath: opts.workerScriptPath } : {}),
    workerLog: (_stream, line) => logWorkerLine(log, line),
  });
  const stackFile = join(dir, "stack.json");
  const announced: StackFile = {
    apiUrl: cloud.apiUrl,
    apiToken: cloud.apiToken,
    pid: process.pid,
    startedAt: new Date().toISOString(),
  };
  await writeFile(stackFile, `${JSON.stringify(announced, null, 2)}\n`, { mode: 0o600 });
  log("stack", `local cloud up: api ${cloud.apiUrl}, state in ${dir}`);
  let stopping: Promise<void> | undefined;
  return {
    cloud,
    dir,
    killMachine: async (machineId, signal) => runner.kill(machineId, signal),
    stop() {
      stopping ??= (async () => {
        await rm(stackFile, { force: true });
        await cloud.stop();
      })();
      return stopping;
    },
  };
}

/**
 * The worker logs JSON lines tagged with their `source` (api, queue, cron). Successful request
 * lines are routine (clients poll), so they are debug; everything else is an event worth a line.
 */
function logWorkerLine(log: StackLogger, line: string) {
  let entry: { source?: unknown; status?: unknown; level?: unknown } = {};
  try {
    entry = JSON.parse(line) as typeof entry;
  } catch {
    // workerd's own output, not a log line of ours.
  }
  const source = entry.source === "queue" || entry.source === "cron" ? entry.source : "api";
  const routine = typeof entry.status === "number" && entry.status < 400;
  log(source, line, routine || entry.level === "debug" ? "debug" : "info");
}

/** Reads the announcement of a stack running in `dir`, if its process is still alive. */
export async function readRunningStack(dir: string): Promise<StackFile | null> {
  let stack: StackFile;
  try {
    stack = JSON.parse(await readFile(join(resolve(dir), "stack.json"), "utf8")) as StackFile;
  } catch {
    return null;
  }
  try {
    process.kill(stack.pid, 0);
  } catch {
    return null;
  }
  return stack;
}

async function loadOrCreateSecrets(path: string): Promise<Record<SecretName, string>> {
  let stored: Partial<Record<SecretName, string>> = {};
  try {
    stored = JSON.parse(await readFile(path, "utf8")) as Partial<Record<SecretName, string>>;
  } catch {
    // First start in this directory.
  }
  const secrets = Object.fromEntries(
    (Object.keys(secretDeclarations) as SecretName[]).map((name) => [
      name,
      stored[name] ?? randomBytes(32).toString("base64url"),
    ]),
  ) as Record<SecretName, string>;
  await writeFile(path, `${JSON.stringify(secrets, null, 2)}\n`, { mode: 0o600 });
  await chmod(path, 0o600);
  return secrets;
}
