/**
 * A typed client for the Fly Machines REST API (`/v1/apps/{app}/machines`), shapes as in
 * superfly/fly-go `machine_types.go`. Retries 429, 5xx and network failures a bounded number of
 * times with the repo's backoff (`contract/retry.ts`), honouring `Retry-After`; everything else
 * fails at once with a `FlyApiError` carrying the HTTP status.
 */
import { machineEnv, type Settings } from "../bindings.ts";
import { abortableSleep, retry } from "../contract/retry.ts";
import type { MachinePhase } from "../state/index.ts";

/** fly-go `MachineGuest` (the parts we set). */
export interface FlyMachineGuest {
  cpu_kind: string;
  cpus: number;
  memory_mb: number;
}

/** fly-go `MachineConfig` (the parts we set). */
export interface FlyMachineConfig {
  image: string;
  env: Record<string, string>;
  guest: FlyMachineGuest;
  restart: { policy: "no" | "always" | "on-failure"; max_retries?: number };
  auto_destroy: boolean;
  metadata?: Record<string, string>;
}

/** fly-go `LaunchMachineInput`. */
export interface FlyCreateMachineInput {
  name: string;
  region: string;
  config: FlyMachineConfig;
}

/** fly-go `Machine` (the parts we read). */
export interface FlyMachine {
  id: string;
  name: string;
  state: string;
  region: string;
  instance_id?: string;
  private_ip?: string;
  created_at?: string;
  updated_at?: string;
  config?: Partial<FlyMachineConfig>;
}

/** fly-go `MachineStartResponse`. */
export interface FlyStartResponse {
  message?: string;
  status?: string;
  previous_state?: string;
}

export type FlyErrorKind = "rate_limited" | "server_error" | "network" | "not_found" | "conflict" | "client_error";

export class FlyApiError extends Error {
  constructor(
    readonly kind: FlyErrorKind,
    /** HTTP status; 0 when no response arrived. */
    readonly status: number,
    message: string,
    readonly attempts: number,
    /** What the answer's `Retry-After` asked for, in ms. */
    readonly retryAfterMs: number | null = null,
  ) {
    super(message);
    this.name = "FlyApiError";
  }
}

export interface FlyClient {
  createMachine(input: FlyCreateMachineInput): Promise<FlyMachine>;
  listMachines(): Promise<FlyMachine[]>;
  getMachine(id: string): Promise<FlyMachine>;
  startMachine(id: string): Promise<FlyStartResponse>;
  stopMachine(id: string, opts?: { signal?: string; timeout?: string }): Promise<void>;
  waitMachine(id: string, opts: { state: string; timeoutSeconds?: number; instanceId?: string }): Promise<void>;
  deleteMachine(id: string, opts?: { force?: boolean }): Promise<void>;
}

export interface FlyClientOptions {
  baseUrl: string;
  appName: string;
  token: string;
  /** Total tries per call, including the first (default 4). */
  maxAttempts?: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
  fetch?: typeof fetch;
  sleep?: (ms: number) => Promise<void>;
  random?: () => number;
  /** A call that has not answered by then counts as a network error and is retried (default 15 s). */
  requestTimeoutMs?: number;
}

/** Fly machine states (fly-go `MachineState*`) as the pool reads them. */
export function machinePhase(flyState: string): MachinePhase {
  switch (flyState) {
    case "destroyed":
    case "destroying":
      return "gone";
    case "stopped":
    case "suspended":
      return "stopped";
    case "started":
      return "started";
    default:
      return "transitioning";
  }
}

/** The config every transcoding machine is created with; env carries exactly `machineEnv`. */
export function machineConfigFor(settings: Settings): FlyMachineConfig {
  const env = Object.fromEntries(machineEnv.map((name) => [name, String(settings[name])]));
  return {
    image: settings.MACHINE_IMAGE,
    env,
    guest: { cpu_kind: settings.MACHINE_CPU_KIND, cpus: settings.MACHINE_CPUS, memory_mb: settings.MACHINE_MEMORY_MB },
    restart: { policy: "no" },
    auto_destroy: false,
    metadata: { "tcoder-role": "transcoder" },
  };
}

/** Retry-After as ms: delta-seconds or an HTTP date. */
function retryAfterMs(header: string | null, nowMs: number): number | null {
  if (!header) return null;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(header);
  return Number.isNaN(date) ? null : Math.max(0, date - nowMs);
}

function kindOf(status: number): FlyErrorKind {
  if (status === 429) return "rate_limited";
  if (status >= 500) return "server_error";
  if (status === 404) return "not_found";
  if (status === 409 || status === 412) return "conflict";
  return "client_error";
}

const retryable = (kind: FlyErrorKind) => kind === "rate_limited" || kind === "server_error" || kind === "network";

export function createFlyClientWith(opts: FlyClientOptions): FlyClient {
  const maxAttempts = Math.max(1, opts.maxAttempts ?? 4);
  const baseDelayMs = opts.baseDelayMs ?? 250;
  const maxDelayMs = opts.maxDelayMs ?? 5_000;
  const doFetch = opts.fetch ?? ((input, init) => fetch(input, init));
  const sleep = opts.sleep ?? abortableSleep;
  const random = opts.random ?? Math.random;
  const requestTimeoutMs = opts.requestTimeoutMs ?? 15_000;
  const root = `${opts.baseUrl.replace(/\/+$/, "")}/v1/apps/${encodeURIComponent(opts.appName)}/machines`;

  /** One try: the answer's JSON, or a FlyApiError. */
  async function once(method: string, path: string, body: unknown, attempt: number, timeoutMs: number) {
    let res: Response;
    try {
      // A Fly API that never answers must not hang admission or the cron.
      res = await doFetch(`${root}${path}`, {
        method,
        signal: AbortSignal.timeout(timeoutMs),
        headers: {
          authorization: `Bearer ${opts.token}`,
          accept: "application/json",
          ...(body === undefined ? {} : { "content-type": "application/json" }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (cause) {
      const detail = cause instanceof Error ? cause.message : String(cause);
      throw new FlyApiError("network", 0, `${method} ${path}: ${detail}`, attempt);
    }
    const text = await res.text();
    if (res.ok) return text ? (JSON.parse(text) as unknown) : undefined;
    let detail = text.slice(0, 300);
    try {
      const parsed = JSON.parse(text) as { error?: unknown };
      if (typeof parsed.error === "string") detail = parsed.error;
    } catch {
      // not JSON: keep the text
    }
    throw new FlyApiError(
      kindOf(res.status),
      res.status,
      `${method} ${path}: ${res.status} ${detail}`,
      attempt,
      retryAfterMs(res.headers.get("retry-after"), Date.now()),
    );
  }

  async function request<T>(
    method: string,
    path: string,
    body?: unknown,
    beforeRetry?: () => Promise<T | null>,
    timeoutMs = requestTimeoutMs,
  ): Promise<T> {
    return retry(
      async (attempt) => {
        if (attempt > 1 && beforeRetry) {
          const settled = await beforeRetry();
          if (settled !== null) return settled;
        }
        return (await once(method, path, body, attempt, timeoutMs)) as T;
      },
      {
        attempts: maxAttempts,
        baseDelayMs,
        maxDelayMs,
        sleep,
        random,
        retryIf: (error) => {
          if (!(error instanceof FlyApiError) || !retryable(error.kind)) return false;
          // Retry-After is honoured up to twice the longest backoff, so one answer cannot stall admission.
          return error.retryAfterMs === null ? true : { afterMs: Math.min(maxDelayMs * 2, error.retryAfterMs) };
        },
      },
    );
  }

  const id = (machineId: string) => `/${encodeURIComponent(machineId)}`;

  const findByName = async (name: string) =>
    (await client.listMachines().catch(() => [])).find((m) => m.name === name) ?? null;

  const client: FlyClient = {
    createMachine: async (input) => {
      try {
        // A 5xx or lost response may still have created the machine: look for it by name before
        // trying again, so a retry never makes a second one.
        return await request<FlyMachine>("POST", "", input, () => findByName(input.name));
      } catch (err) {
        // Fly's 409 already_exists: a machine has this name, made by an earlier try of this same
        // create (names carry the reservation token) whose answer never arrived. Adopt it.
        if (!(err instanceof FlyApiError && err.status === 409)) throw err;
        const existing = await findByName(input.name);
        if (!existing) throw err;
        return existing;
      }
    },
    listMachines: () => request<FlyMachine[]>("GET", "").then((list) => (Array.isArray(list) ? list : [])),
    getMachine: (machineId) => request<FlyMachine>("GET", id(machineId)),
    startMachine: (machineId) => request<FlyStartResponse>("POST", `${id(machineId)}/start`).then((r) => r ?? {}),
    stopMachine: async (machineId, stop) => {
      await request("POST", `${id(machineId)}/stop`, stop ?? {});
    },
    waitMachine: async (machineId, wait) => {
      const timeoutSeconds = wait.timeoutSeconds ?? 60;
      const query = new URLSearchParams({ state: wait.state, timeout: String(timeoutSeconds) });
      if (wait.instanceId) query.set("instance_id", wait.instanceId);
      // The server holds a wait open for up to its timeout; allow that plus the usual answer time.
      await request(
        "GET",
        `${id(machineId)}/wait?${query}`,
        undefined,
        undefined,
        timeoutSeconds * 1000 + requestTimeoutMs,
      );
    },
    deleteMachine: async (machineId, del) => {
      await request("DELETE", `${id(machineId)}${del?.force ? "?force=true" : ""}`);
    },
  };
  return client;
}

export const createFlyClient = (
  settings: Pick<Settings, "FLY_API_BASE_URL" | "FLY_APP_NAME" | "FLY_API_TOKEN">,
  overrides: Partial<FlyClientOptions> = {},
): FlyClient =>
  createFlyClientWith({
    baseUrl: settings.FLY_API_BASE_URL,
    appName: settings.FLY_APP_NAME,
    token: settings.FLY_API_TOKEN,
    ...overrides,
  });
