/**
 * The real services the API talks to, started per test file: redis-server behind the Upstash
 * REST bridge, the SigV4-verifying S3 store, and the local Fly Machines API. `env` is a complete
 * worker environment pointing at them; `callbacks` records what the API put on the callbacks queue.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { noopRunner, startFlyApi } from "@tcoder/local/fly-api";
import { startRedisServer } from "@tcoder/local/services/redis-server";
import { startS3Store } from "@tcoder/local/services/s3-store";
import { startUpstashBridge } from "@tcoder/local/services/upstash-bridge";
import { Redis } from "@upstash/redis";
import { app } from "../../src/app.ts";
import type { Env } from "../../src/bindings.ts";
import { defaultVars } from "../../src/bindings.ts";

export const API_TOKEN = "test-api-token-0123456789abcdef";
export const MACHINE_EVENTS_SECRET = "machine-events-secret-0123456789";
export const CALLBACK_SIGNING_SECRET = "callback-signing-secret-0123456789";
export const PLAYBACK_SIGNING_SECRET = "playback-signing-secret-0123456789";
export const OUTPUTS_BASE_URL = "https://media.example.test";
const credentials = { accessKeyId: "test-access-key", secretAccessKey: "test-secret-key-0123456789" };

export interface SentMessage {
  body: unknown;
  options?: { delaySeconds?: number };
}

export interface ControlPlaneServices {
  env: Env;
  redis: Redis;
  callbacks: SentMessage[];
  flyMachines(): unknown[];
  /** `app.request` with the bearer token (unless `token: null`), JSON encoding of `json`, and `env` (default the services'). */
  request(path: string, init?: RequestInit & { json?: unknown; token?: string | null; env?: Env }): Promise<Response>;
  stop(): Promise<void>;
}

export async function startControlPlaneServices(overrides: Partial<Env> = {}): Promise<ControlPlaneServices> {
  const dir = await mkdtemp(join(tmpdir(), "tcoder-worker-api-"));
  const redisServer = await startRedisServer({ dir: join(dir, "redis") });
  const bridge = await startUpstashBridge({ redisUrl: redisServer.url, token: "bridge-token" });
  const s3 = await startS3Store({
    dir: join(dir, "s3"),
    credentials,
    region: "auto",
    buckets: ["tcoder-inputs", "tcoder-outputs"],
  });
  const fly = await startFlyApi({ token: "fly-token", runner: noopRunner() });
  const created = await fetch(`${fly.url}/v1/apps`, {
    method: "POST",
    headers: { authorization: `Bearer ${fly.token}`, "content-type": "application/json" },
    body: JSON.stringify({ app_name: "tcoder-machines", org_slug: "personal" }),
  });
  if (!created.ok) throw new Error(`creating the Fly app answered ${created.status}`);

  const callbacks: SentMessage[] = [];
  const env: Env = {
    ...defaultVars,
    INPUT_BUCKET: "tcoder-inputs",
    OUTPUT_BUCKET: "tcoder-outputs",
    S3_ENDPOINT: s3.endpoint,
    OUTPUTS_BASE_URL,
    UPSTASH_REDIS_REST_URL: bridge.url,
    FLY_API_BASE_URL: fly.url,
    FLY_APP_NAME: "tcoder-machines",
    MACHINE_IMAGE: "registry.fly.io/tcoder-machines:test",
    CONTROL_PLANE_URL: "http://127.0.0.1:8787",
    API_TOKEN,
    UPSTASH_REDIS_REST_TOKEN: bridge.token,
    S3_ACCESS_KEY_ID: credentials.accessKeyId,
    S3_SECRET_ACCESS_KEY: credentials.secretAccessKey,
    FLY_API_TOKEN: fly.token,
    MACHINE_EVENTS_SECRET,
    CALLBACK_SIGNING_SECRET,
    PLAYBACK_SIGNING_SECRET,
    LOG_LEVEL: "error",
    CALLBACKS_QUEUE: {
      async send(body, options) {
        callbacks.push({ body, ...(options ? { options } : {}) });
      },
    },
    ...overrides,
  };
  return {
    env,
    redis: new Redis({ url: bridge.url, token: bridge.token }),
    callbacks,
    flyMachines: () => fly.machines("tcoder-machines"),
    async request(path, init = {}) {
      const { json, token, env: requestEnv = env, ...rest } = init;
      const headers = new Headers(rest.headers);
      if (token !== null) headers.set("authorization", `Bearer ${token ?? API_TOKEN}`);
      if (json !== undefined) headers.set("content-type", "application/json");
      return app.request(
        path,
        { ...rest, headers, ...(json !== undefined ? { body: JSON.stringify(json) } : {}) },
        requestEnv,
      );
    },
    async stop() {
      await Promise.allSettled([fly.stop(), s3.stop(), bridge.stop()]);
      await redisServer.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
