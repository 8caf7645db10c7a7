/**
 * The bundled machine program (dist/main.js) as a process, against real Redis (through the Upstash
 * bridge and the real claim script), the local S3 store and a signature-checking control plane.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PutObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { startRedisServer } from "@tcoder/local/services/redis-server";
import { startS3Store } from "@tcoder/local/services/s3-store";
import { startUpstashBridge } from "@tcoder/local/services/upstash-bridge";
import { cancelJob, createJob, getJob, recoverExpiredLeases } from "@tcoder/worker/state";
import { Redis } from "@upstash/redis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildMachineBundle } from "../src/build.ts";
import { manifestKey, outputPrefix } from "../src/package/layout.ts";
import { createS3Client, listKeys } from "../src/storage/s3.ts";
import { clips } from "./support/clips.ts";
import { type ControlPlaneReceiver, startControlPlaneReceiver } from "./support/control-plane-receiver.ts";

const credentials = { accessKeyId: "machine-key", secretAccessKey: "machine-secret" };
const secret = "machine-events-secret-0123456789";
const token = "upstash-token";
const LEASE_SECONDS = 3;

let dir: string;
let stopAll: (() => Promise<void>)[] = [];
let redis: Redis;
let s3: S3Client;
let controlPlane: ControlPlaneReceiver;
let bundle: string;
let source: string;
let baseEnv: Record<string, string>;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "tcoder-machine-"));
  const redisServer = await startRedisServer({ dir: join(dir, "redis") });
  const bridge = await startUpstashBridge({ redisUrl: redisServer.url, token });
  const store = await startS3Store({ dir: join(dir, "s3"), credentials, buckets: ["inputs", "outputs"] });
  stopAll = [() => store.stop(), () => bridge.stop(), () => redisServer.stop()];
  redis = new Redis({ url: bridge.url, token });
  s3 = createS3Client({ endpoint: store.endpoint, region: "auto", ...credentials });
  controlPlane = await startControlPlaneReceiver(redis, secret);
  stopAll.unshift(() => controlPlane.stop());
  ({ path: bundle } = await buildMachineBundle(join(dir, "bundle", "main.js")));
  // Long enough at 1080p that the kill lands while ffmpeg is still running.
  source = await clips.landscape1080(dir, 4);
  baseEnv = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    UPSTASH_REDIS_REST_URL: bridge.url,
    UPSTASH_REDIS_REST_TOKEN: token,
    S3_ENDPOINT: store.endpoint,
    S3_REGION: "auto",
    S3_ACCESS_KEY_ID: credentials.accessKeyId,
    S3_SECRET_ACCESS_KEY: credentials.secretAccessKey,
    INPUT_BUCKET: "inputs",
    OUTPUT_BUCKET: "outputs",
    OUTPUTS_BASE_URL: `${store.endpoint}/outputs`,
    CONTROL_PLANE_URL: controlPlane.url,
    MACHINE_EVENTS_SECRET: secret,
    JOB_LEASE_SECONDS: String(LEASE_SECONDS),
    MACHINE_IDLE_STOP_SECONDS: "1",
    WORK_DIR: join(dir, "work"),
    X264_PRESET: "veryfast",
    POLL_MIN_MS: "100",
    POLL_MAX_MS: "300",
  };
});

afterAll(async () => {
  s3?.destroy();
  for (const stop of stopAll) await stop();
  await rm(dir, { recursive: true, force: true });
});

interface MachineProcess {
  child: ChildProcess;
  output: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts the bundle in its own process group, so "the machine died" can take ffmpeg with it. */
function startMachine(machineId: string, env: Record<string, string> = baseEnv): MachineProcess {
  const child = spawn(process.execPath, ["--enable-source-maps", bundle], {
    env: { ...env, FLY_MACHINE_ID: machineId },
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout?.on("data", (c: Buffer) => {
    output += c.toString();
  });
  child.stderr?.on("data", (c: Buffer) => {
    output += c.toString();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("exit", (code, signal) => resolve({ code, signal })),
  );
  return { child, output: () => output, exited };
}

const processGroupAlive = (pid: number) => {
  try {
    process.kill(-pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function queueJob(id: string) {
  const inputKey = `inputs/${id}/source.mp4`;
  await s3.send(new PutObjectCommand({ Bucket: "inputs", Key: inputKey, Body: await readFile(source) }));
  await createJob(
    redis,
    { id, preset: "hls-ladder", input: { key: inputKey }, state: "pending", maxAttempts: 3 },
    Date.now(),
  );
}

const transcodingStarted = (jobId: string) => (e: { type: string; jobId: string; stage?: string }) =>
  e.jobId === jobId && e.type === "progress" && e.stage === "transcoding";

describe("machine process", () => {
  it("exits non-zero naming every missing variable when misconfigured", async () => {
    const { S3_ENDPOINT: _, CONTROL_PLANE_URL: __, ...env } = baseEnv;
    const machine = startMachine("m-misconfigured", env);
    expect(await machine.exited).toEqual({ code: 2, signal: null });
    expect(machine.output()).toContain("S3_ENDPOINT is missing");
    expect(machine.output()).toContain("CONTROL_PLANE_URL is missing");
  });

  it("stops with exit 0 once idle with nothing queued", async () => {
    const machine = startMachine("m-idle");
    expect(await machine.exited).toEqual({ code: 0, signal: null });
    expect(machine.output()).toContain('"message":"idle; stopping"');
  });

  it("killed mid-transcode: the job goes back to the queue with nothing published, then completes on the next claim", async () => {
    const jobId = "job-killed";
    await queueJob(jobId);

    const doomed = startMachine("m-doomed");
    await controlPlane.waitFor(transcodingStarted(jobId));
    process.kill(-(doomed.child.pid as number), "SIGKILL");
    await doomed.exited;
    expect(controlPlane.events.filter((e) => e.jobId === jobId).map((e) => e.type)).not.toContain("completed");
    expect(await listKeys(s3, "outputs", outputPrefix(jobId))).toEqual([]);

    // The lease lapses and the control plane's recovery puts the job back in the queue.
    const recovered = await recoverExpiredLeases(redis, Date.now() + (LEASE_SECONDS + 1) * 1000);
    expect(recovered.requeued).toContain(jobId);
    expect(await getJob(redis, jobId)).toMatchObject({ state: "pending", attempts: 1 });

    const survivor = startMachine("m-survivor");
    const done = await controlPlane.waitFor((e) => e.jobId === jobId && e.type === "completed", 120_000);
    expect(await survivor.exited).toEqual({ code: 0, signal: null });
    expect(done).toMatchObject({ machineId: "m-survivor", attempt: 2 });
    const job = await getJob(redis, jobId);
    expect(job).toMatchObject({ state: "completed", progress: 1, outputs: { manifest: manifestKey(jobId) } });
    expect(job?.outputs?.renditions.map((r) => r.name)).toEqual(["1080p", "720p", "540p", "360p"]);
    const published = await listKeys(s3, "outputs", outputPrefix(jobId));
    expect(published).toContain(manifestKey(jobId));
    for (const key of published) expect(key === manifestKey(jobId) || key.startsWith(`outputs/${jobId}/2/`)).toBe(true);
    expect(controlPlane.badSignatures).toBe(0);
  });

  it("on SIGTERM stops ffmpeg, releases the job to the queue at once and exits", async () => {
    const jobId = "job-released";
    await queueJob(jobId);
    const machine = startMachine("m-terminated");
    await controlPlane.waitFor(transcodingStarted(jobId));
    machine.child.kill("SIGTERM");
    expect(await machine.exited).toEqual({ code: 0, signal: null });
    expect(processGroupAlive(machine.child.pid as number)).toBe(false);
    expect(controlPlane.events.filter((e) => e.jobId === jobId).at(-1)).toMatchObject({ type: "released" });
    expect(await getJob(redis, jobId)).toMatchObject({ state: "pending" });
    expect(await listKeys(s3, "outputs", outputPrefix(jobId))).toEqual([]);
    await cancelJob(redis, jobId, Date.now());
  });

  it("when the job is canceled mid-transcode, the next heartbeat's abort stops the work and nothing is published", async () => {
    const jobId = "job-canceled";
    await queueJob(jobId);
    const machine = startMachine("m-canceled");
    await controlPlane.waitFor(transcodingStarted(jobId));
    expect(await cancelJob(redis, jobId, Date.now())).toMatchObject({ ok: true });
    expect(await machine.exited).toEqual({ code: 0, signal: null });
    expect(machine.output()).toContain("control plane says abort");
    const types = controlPlane.events.filter((e) => e.jobId === jobId).map((e) => e.type);
    expect(types).not.toContain("completed");
    expect(types).not.toContain("failed");
    expect(await getJob(redis, jobId)).toMatchObject({ state: "canceled" });
    expect(await listKeys(s3, "outputs", outputPrefix(jobId))).toEqual([]);
  });
});
