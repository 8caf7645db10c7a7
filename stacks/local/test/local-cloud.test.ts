import { mkdtemp, readFile, rm } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { PutObjectCommand } from "@aws-sdk/client-s3";
import { queues, settingsSchema } from "@tcoder/worker/bindings";
import { R2EventNotification } from "@tcoder/worker/contract";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LocalCloud, machineLogPath, startLocalCloud, workerLogPath } from "../src/local-cloud.ts";

const workerScriptPath = fileURLToPath(new URL("./fixtures/recording-worker.mjs", import.meta.url));
const machineProgram = fileURLToPath(new URL("./fixtures/machine-program.mjs", import.meta.url));

interface Received {
  queue: { queue: string; body: unknown; attempts: number }[];
}

const acceptsConnections = (url: string) =>
  new Promise<boolean>((resolve) => {
    const { hostname, port } = new URL(url);
    const socket = connect(Number(port), hostname);
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });

describe("local cloud", () => {
  let dir: string;
  let cloud: LocalCloud;
  const received = async () => (await fetch(`${cloud.apiUrl}/received`)).json() as Promise<Received>;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "tcoder-local-cloud-"));
    cloud = await startLocalCloud({
      dir,
      maxMachines: 2,
      workerScriptPath,
      machineCommand: [process.execPath, machineProgram],
    });
  });
  afterAll(async () => {
    await cloud?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it("binds the worker with valid settings pointing at the local services", async () => {
    expect(() => settingsSchema.parse(cloud.env)).not.toThrow();
    expect(cloud.settings.MAX_MACHINES).toBe(2);
    expect(cloud.settings.ALLOW_INSECURE_CALLBACKS).toBe(true);
    expect(cloud.settings.CONTROL_PLANE_URL).toBe(cloud.apiUrl);
    expect(cloud.settings.FLY_API_BASE_URL).toBe(cloud.fly.url);
    expect(cloud.settings.API_TOKEN.length).toBeGreaterThanOrEqual(32);
    expect(cloud.settings.MACHINE_EVENTS_SECRET).not.toBe(cloud.settings.CALLBACK_SIGNING_SECRET);
    const bound = await (await fetch(`${cloud.apiUrl}/env?name=S3_ENDPOINT&name=API_TOKEN`)).json();
    expect(bound).toEqual({ S3_ENDPOINT: cloud.settings.S3_ENDPOINT, API_TOKEN: cloud.apiToken });
  });

  it("keeps the worker's console output in worker.log under the cloud's dir", async () => {
    await fetch(`${cloud.apiUrl}/log?text=into-the-file`);
    await expect
      .poll(() => readFile(workerLogPath(dir), "utf8").catch(() => ""))
      .toContain("worker says into-the-file");
  });

  it("has the Fly app created and Redis reachable through the Upstash bridge", async () => {
    const app = await fetch(`${cloud.fly.url}/v1/apps/${cloud.settings.FLY_APP_NAME}`, {
      headers: { authorization: `Bearer ${cloud.settings.FLY_API_TOKEN}` },
    });
    expect(app.status).toBe(200);
    await cloud.redis.set("local-cloud:probe", "1");
    expect(await cloud.redis.get("local-cloud:probe")).toBe(1);
  });

  it("lets the console's origin (the worker's) PUT uploads and read outputs, and no other origin", async () => {
    const { S3_ENDPOINT, INPUT_BUCKET, OUTPUT_BUCKET } = cloud.settings;
    const preflight = (origin: string, bucket: string, method: string, headers: string) =>
      fetch(`${S3_ENDPOINT}/${bucket}/inputs/job-9/clip.mp4`, {
        method: "OPTIONS",
        headers: { origin, "access-control-request-method": method, "access-control-request-headers": headers },
      });
    const upload = await preflight(cloud.apiUrl, INPUT_BUCKET, "PUT", "content-type");
    expect(upload.status).toBe(200);
    expect(upload.headers.get("access-control-allow-origin")).toBe(cloud.apiUrl);
    expect((await preflight(cloud.apiUrl, OUTPUT_BUCKET, "GET", "range")).status).toBe(200);
    expect((await preflight("http://127.0.0.1:1", INPUT_BUCKET, "PUT", "content-type")).status).toBe(403);
    expect((await preflight(cloud.apiUrl, OUTPUT_BUCKET, "PUT", "content-type")).status).toBe(403);
  });

  it("turns a PUT under inputs/ in the input bucket into an R2 event at the uploads consumer, and nothing else", async () => {
    const put = (bucket: string, key: string) =>
      cloud.s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: "video bytes", ContentType: "video/mp4" }));
    await put(cloud.settings.INPUT_BUCKET, "elsewhere/job-0/clip.mp4");
    await put(cloud.settings.OUTPUT_BUCKET, "inputs/job-0/clip.mp4");
    await put(cloud.settings.INPUT_BUCKET, "inputs/job-1/clip.mp4");

    await expect.poll(async () => (await received()).queue.length, { timeout: 15_000, interval: 250 }).toBe(1);
    const [message] = (await received()).queue;
    expect(message?.queue).toBe(queues.uploads.name);
    const event = R2EventNotification.parse(message?.body);
    expect(event).toMatchObject({
      action: "PutObject",
      bucket: cloud.settings.INPUT_BUCKET,
      object: { key: "inputs/job-1/clip.mp4", size: "video bytes".length },
    });
  });

  it("stops every service, leaving nothing listening and no machine process behind", async () => {
    const flyCall = (method: string, path: string, body?: unknown) =>
      fetch(`${cloud.fly.url}/v1/apps/${cloud.settings.FLY_APP_NAME}/machines${path}`, {
        method,
        headers: { authorization: `Bearer ${cloud.settings.FLY_API_TOKEN}`, "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    const machine = (await (await flyCall("POST", "", { config: { image: cloud.settings.MACHINE_IMAGE } })).json()) as {
      id: string;
    };
    expect((await flyCall("GET", `/${machine.id}/wait?state=started`)).status).toBe(200);
    const log = () => readFile(machineLogPath(dir, machine.id), "utf8").catch(() => "");
    await expect.poll(log).toMatch(/up as pid \d+/);
    const pid = Number(/up as pid (\d+)/.exec(await log())?.[1]);

    const endpoints = [
      cloud.apiUrl,
      cloud.fly.url,
      cloud.settings.S3_ENDPOINT,
      cloud.settings.UPSTASH_REDIS_REST_URL,
      cloud.redisServer.url,
    ];
    await cloud.stop();
    for (const url of endpoints) expect(await acceptsConnections(url.replace("redis://", "http://")), url).toBe(false);
    expect(() => process.kill(pid, 0)).toThrow();
  });
});

describe("local cloud with the real worker bundle", () => {
  let dir: string;
  let cloud: LocalCloud;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "tcoder-local-cloud-real-"));
    cloud = await startLocalCloud({ dir, maxMachines: 1 });
  });
  afterAll(async () => {
    await cloud?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it("an upload through the presigned URL queues the job and admission creates a machine in the local Fly API", async () => {
    const headers = { authorization: `Bearer ${cloud.apiToken}`, "content-type": "application/json" };
    const source = new Uint8Array(2048).fill(1);
    const reserved = await fetch(`${cloud.apiUrl}/v1/uploads`, {
      method: "POST",
      headers,
      body: JSON.stringify({ filename: "clip.mp4", contentType: "video/mp4", size: source.length }),
    });
    expect(reserved.status).toBe(201);
    const { jobId, upload } = (await reserved.json()) as {
      jobId: string;
      upload: { url: string; headers: Record<string, string> };
    };
    const put = await fetch(upload.url, { method: "PUT", headers: upload.headers, body: source });
    expect(put.status).toBe(200);

    await expect
      .poll(
        async () =>
          ((await (await fetch(`${cloud.apiUrl}/v1/jobs/${jobId}`, { headers })).json()) as { state: string }).state,
        {
          timeout: 20_000,
          interval: 250,
        },
      )
      .toBe("pending");
    await expect
      .poll(() => cloud.fly.machines(cloud.settings.FLY_APP_NAME).map((m) => m.state), {
        timeout: 20_000,
        interval: 250,
      })
      .toEqual(["started"]);
    const [machine] = cloud.fly.machines(cloud.settings.FLY_APP_NAME);
    expect(machine?.config.image).toBe(cloud.settings.MACHINE_IMAGE);
    expect(machine?.config.env?.CONTROL_PLANE_URL).toBe(cloud.apiUrl);
    expect(cloud.fly.calls()["POST /v1/apps/{app}/machines"]).toBe(1);
  });
});
