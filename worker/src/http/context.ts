/**
 * What every handler can rely on: the parsed settings and a Redis client, set once per request
 * by `withSettings` before any route runs.
 */
import { Redis } from "@upstash/redis/cloudflare";
import type { Env, Settings } from "../bindings.ts";
import { parseSettings, SettingsError } from "../bindings.ts";
import { ProblemError } from "./problem.ts";

export interface AppEnv {
  Bindings: Env;
  Variables: {
    settings: Settings;
    redis: Redis;
    /** Fingerprint of the API key the request authenticated with (auth.ts), for the request log. */
    apiKey?: string;
  };
}

// The env object is the same for every request an isolate serves; parse it once.
const parsed = new WeakMap<object, Settings>();

/**
 * Parses `env` into typed settings. A bad or missing value becomes a `misconfigured` problem that
 * names the setting but never echoes its value (it may be a secret).
 */
export function readSettings(env: Env): Settings {
  const cached = parsed.get(env);
  if (cached) return cached;
  let settings: Settings;
  try {
    settings = parseSettings(env);
  } catch (error) {
    if (error instanceof SettingsError) throw new ProblemError("misconfigured", { detail: error.message });
    throw error;
  }
  parsed.set(env, settings);
  return settings;
}

export const redisFromSettings = (settings: Settings): Redis =>
  // Telemetry would send runtime and SDK details to Upstash with every command; nothing needs it.
  new Redis({ url: settings.UPSTASH_REDIS_REST_URL, token: settings.UPSTASH_REDIS_REST_TOKEN, enableTelemetry: false });
