/**
 * Real services for the state, admission, cron and queue tests: redis-server behind the Upstash
 * REST bridge (the client talks REST exactly as in workerd) and the local Fly Machines API with
 * machines that run nothing. `env` is a complete worker environment pointing at them.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type LocalFlyApi, noopRunner, startFlyApi } from "@tcoder/local/fly-api";
import { startRedisServer } from "@tcoder/local/services/redis-server";
import { startUpstashBridge } from "@tcoder/local/services/upstash-bridge";
import { Redis } from "@upstash/redis";
import { afterAll, beforeAll, beforeEach } from "vitest";
import { defaultVars, type Env, type Settings, settingsSchema } from "../../src/bindings.ts";
import { createFlyClient, type FlyClient } from "../../src/fly/client.ts";

export const FLY_APP = "tcoder-machines";

export interface StateServices {
  redis: Redis;
  fly: LocalFlyApi;
  /** A Fly client with millisecond backoff, so retried calls keep tests fast. */
  flyClient: FlyClient;
  env: Env;
  settings: Settings;
  /** Messages the code under test put on the callbacks queue. */
  callbacks: unknown[];
  /** Deletes every key: each test starts from an empty Redis. */
  reset(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * The services for one test file: started once before its tests, emptied before each, stopped
 * after. Call at the top of the file; the returned object reads the running services.
 */
export function useStateServices(overrides: Partial<Env> = {}): StateServices {
  let services: StateServices | undefined;
  beforeAll(async () => {
    services = await startStateServices(overrides);
  }, 60_000);
  afterAll(async () => {
    await services?.stop();
  });
  beforeEach(async () => {
    await services?.reset();
  });
  // A view, so tests keep writing `s.redis`: the services exist only once beforeAll has run.
  return new Proxy({} as StateServices, {
    get(_, key: keyof StateServices) {
      if (!services) throw new Error("state services are used before beforeAll started them");
      return services[key];
    },
  });
}

export async function startStateServices(overrides: Partial<Env> = {}): Promise<StateServices> {
  const dir = await mkdtemp(join(tmpdir(), "tcoder-worker-state-"));
  const redisServer = await startRedisServer({ dir: join(dir, "redis") });
  const bridge = await startUpstashBridge({ redisUrl: redisServer.url, token: "bridge-token" });
  const fly = await startFlyApi({ token: "fly-token", runner: noopRunner() });
  const created = await fetch(`${fly.url}/v1/apps`, {
    method: "POST",
    headers: { authorization: `Bearer ${fly.token}`, "content-type": "application/json" },
    body: JSON.stringify({ app_name: FLY_APP, org_slug: "personal" }),
  });
  if (!created.ok) throw new Error(`creating the Fly app answered ${created.status}`);

  const callbacks: unknown[] = [];
  const env: Env = {
    ...defaultVars,
    INPUT_BUCKET: "tcoder-inputs",
    OUTPUT_BUCKET: "tcoder-outputs",
    S3_ENDPOINT: "http://127.0.0.1:9",
    OUTPUTS_BASE_URL: "https://media.example.test",
    UPSTASH_REDIS_REST_URL: bridge.url,
    FLY_API_BASE_URL: fly.url,
    FLY_APP_NAME: FLY_APP,
    MACHINE_IMAGE: "registry.fly.io/tcoder-machines:test",
    CONTROL_PLANE_URL: "http://127.0.0.1:8787",
    API_TOKEN: "test-api-token-0123456789abcdef",
    UPSTASH_REDIS_REST_TOKEN: bridge.token,
    S3_ACCESS_KEY_ID: "test-access-key",
    S3_SECRET_ACCESS_KEY: "test-secret-key",
    FLY_API_TOKEN: fly.token,
    MACHINE_EVENTS_SECRET: "machine-events-secret-0123456789",
    CALLBACK_SIGNING_SECRET: "callback-signing-secret-0123456789",
    PLAYBACK_SIGNING_SECRET: "playback-signing-secret-0123456789",
    LOG_LEVEL: "error",
    CALLBACKS_QUEUE: {
      async send(body) {
        callbacks.push(body);
      },
    },
    ...overrides,
  };
  const settings = settingsSchema.parse(env);
  const redis = new Redis({ url: bridge.url, token: bridge.token });
  const flyClient = createFlyClient(settings, { baseDelayMs: 1, maxDelayMs: 5 });
  return {
    redis,
    fly,
    flyClient,
    env,
    settings,
    callbacks,
    async reset() {
      await redis.flushdb();
      callbacks.length = 0;
      for (const m of fly.machines(FLY_APP))
        if (m.state !== "destroyed") await flyClient.deleteMachine(m.id, { force: true });
      fly.setFaults(undefined);
      fly.resetCalls();
    },
    async stop() {
      await fly.stop();
      await bridge.stop();
      await redisServer.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
