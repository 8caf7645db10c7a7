/**
 * What the fault, load and security tests share: a local stack with real machine processes tuned
 * for speed (ultrafast x264, short leases, a fast cron), a record of what every machine logged,
 * a callback receiver, and small helpers to submit clips and wait for outcomes.
 */

import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient, type TcoderClient } from "@tcoder/client/node";
import type { VarName } from "@tcoder/worker/bindings";
import type { Job } from "@tcoder/worker/contract";
import type { FlyApiFaults } from "../../src/services/fly-api.ts";
import type { S3Faults } from "../../src/services/s3-store.ts";
import { type LocalStack, type RunnerKind, startLocalStack } from "../../src/stack.ts";
import { makeClip } from "../e2e/clips.ts";

/** A machine in any of these may still have its program running: all of them count against the cap. */
export const liveMachineStates = new Set(["created", "starting", "started", "stopping"]);

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `check` until it returns a value other than undefined/false, or throws after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  { timeoutMs = 60_000, everyMs = 100 } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** One line a machine logged (the machine-image logs JSON lines). */
export interface MachineLogLine {
  machineId: string;
  message: string;
  jobId?: string;
  attempt?: number;
  raw: string;
}

export interface FaultStackOptions {
  maxMachines?: number;
  vars?: Partial<Record<VarName, string>>;
  flyFaults?: FlyApiFaults;
  s3Faults?: S3Faults;
  cronIntervalMs?: number;
  machineEnv?: Record<string, string>;
  /** What runs the machines (default `process`). */
  runner?: RunnerKind;
}

export interface FaultStack {
  stack: LocalStack;
  /** The SDK's client of the stack's API. */
  api: TcoderClient;
  /** Scratch space of this stack's test (clips, state), removed by `stop`. */
  dir: string;
  machineLines: MachineLogLine[];
  /** Every line the worker logged. */
  workerLines: string[];
  /** The worker's structured log lines (`log()` in worker/src/http/logging.ts) whose fields include `fields`. */
  workerEvents(fields: Record<string, unknown>): Record<string, unknown>[];
  /** Machines that logged "completed" for a job: more than one entry means it ran to completion twice. */
  completionsOf(jobId: string): MachineLogLine[];
  /** Peak number of live machines seen by a 50 ms sampler since start. */
  peakLiveMachines(): number;
  liveMachines(): number;
  stop(): Promise<void>;
}

export async function startFaultStack(name: string, opts: FaultStackOptions = {}): Promise<FaultStack> {
  const dir = await mkdtemp(join(tmpdir(), `tcoder-${name}-`));
  const machineLines: MachineLogLine[] = [];
  const workerLines: string[] = [];
  let stack: LocalStack;
  try {
    stack = await startLocalStack({
      dir: join(dir, "state"),
      maxMachines: opts.maxMachines ?? 2,
      cronIntervalMs: opts.cronIntervalMs ?? 500,
      vars: { MACHINE_IDLE_STOP_SECONDS: "20", DEFAULT_PRESET: "mp4-720p", ...opts.vars },
      machineEnv: { X264_PRESET: "ultrafast", POLL_MIN_MS: "200", POLL_MAX_MS: "1000", ...opts.machineEnv },
      ...(opts.flyFaults ? { flyFaults: opts.flyFaults } : {}),
      ...(opts.s3Faults ? { s3Faults: opts.s3Faults } : {}),
      ...(opts.runner ? { runner: opts.runner } : {}),
      log: (source, line) => {
        if (!source.startsWith("machine ")) {
          workerLines.push(line);
          return;
        }
        const machineId = source.slice("machine ".length);
        try {
          const entry = JSON.parse(line) as { message?: string; jobId?: string; attempt?: number };
          machineLines.push({
            machineId,
            message: entry.message ?? "",
            ...(entry.jobId ? { jobId: entry.jobId } : {}),
            ...(entry.attempt ? { attempt: entry.attempt } : {}),
            raw: line,
          });
        } catch {
          machineLines.push({ machineId, message: line, raw: line });
        }
      },
    });
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
  const { cloud } = stack;
  const app = cloud.settings.FLY_APP_NAME;
  const liveMachines = () => cloud.fly.machines(app).filter((m) => liveMachineStates.has(m.state)).length;
  let peak = 0;
  const sampler = setInterval(() => {
    peak = Math.max(peak, liveMachines());
  }, 50);
  return {
    stack,
    api: createClient({ baseUrl: cloud.apiUrl, token: cloud.apiToken }),
    dir,
    machineLines,
    workerLines,
    workerEvents: (fields) =>
      workerLines
        .map(parseLogLine)
        .filter((entry): entry is Record<string, unknown> => entry !== null)
        .filter((entry) => Object.entries(fields).every(([name, value]) => entry[name] === value)),
    completionsOf: (jobId) => machineLines.filter((l) => l.jobId === jobId && l.message === "completed"),
    peakLiveMachines: () => peak,
    liveMachines,
    async stop() {
      clearInterval(sampler);
      await stack.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

function parseLogLine(line: string): Record<string, unknown> | null {
  try {
    const parsed = JSON.parse(line) as unknown;
    return parsed && typeof parsed === "object" ? (parsed as Record<string, unknown>) : null;
  } catch {
    return null; // workerd's own output
  }
}

/** A 2 s 160x120 clip with audio: the smallest thing that exercises the whole pipeline. */
export const makeTinyClip = (dir: string, name = "tiny.mp4", seconds = 2) =>
  makeClip(join(dir, name), { seconds, size: "160x120", rate: 15 });

export interface SubmitOptions {
  preset?: string;
  callbackUrl?: string;
  filename?: string;
}

/** Uploads the file through the SDK, which tries a PUT the store answered with a 5xx again (the S3 fault tests make it do so). */
export async function submitClip(fault: FaultStack, path: string, opts: SubmitOptions = {}): Promise<string> {
  const job = await fault.api.upload(path, {
    filename: opts.filename ?? "clip.mp4",
    contentType: "video/mp4",
    retries: 7,
    ...(opts.preset ? { preset: opts.preset } : {}),
    ...(opts.callbackUrl ? { callbackUrl: opts.callbackUrl } : {}),
  });
  return job.id;
}

/** Waits until every job is terminal; returns them in the order given. */
export const waitForTerminal = (api: TcoderClient, ids: string[], timeoutMs = 120_000): Promise<Job[]> =>
  Promise.all(ids.map((id) => api.waitForJob(id, { timeout: timeoutMs, interval: 250, maxInterval: 250 })));

/** A client's callback endpoint: records every signed POST it receives. */
export interface CallbackReceiver {
  url: string;
  received: { type: string; job: Job; signature: string | undefined }[];
  /** `job.completed` callbacks per job id. */
  completedCount(jobId: string): number;
  close(): Promise<void>;
}

export async function startCallbackReceiver(): Promise<CallbackReceiver> {
  const received: CallbackReceiver["received"] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      try {
        const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as { type: string; job: Job };
        received.push({ ...body, signature: req.headers["tcoder-signature"] as string | undefined });
      } catch {
        // Not a callback; answer anyway.
      }
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/hook`,
    received,
    completedCount: (jobId) => received.filter((r) => r.type === "job.completed" && r.job.id === jobId).length,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
