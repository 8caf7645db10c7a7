/**
 * The machine's only way to tell the control plane anything: signed `POST /v1/machine-events`.
 * Network errors and 5xx/429 are retried with backoff (the control plane may be redeploying);
 * any other refusal is final and surfaces as ControlPlaneRefusedError.
 */
import {
  MACHINE_EVENTS_PATH,
  type MachineEvent,
  MachineEventResponse,
  SIGNATURE_HEADER,
  signPayload,
} from "@tcoder/worker/contract";

export interface ControlPlane {
  send(event: MachineEvent, options?: { attempts?: number }): Promise<MachineEventResponse>;
}

export class ControlPlaneRefusedError extends Error {
  constructor(
    readonly status: number,
    readonly body: string,
  ) {
    super(`control plane refused the event with ${status}: ${body.slice(0, 300)}`);
    this.name = "ControlPlaneRefusedError";
  }
}

export interface ControlPlaneOptions {
  baseUrl: string;
  secret: string;
  fetch?: typeof fetch;
  /** Attempts per event unless the caller says otherwise. */
  attempts?: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
  timeoutMs?: number;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export function createControlPlane(options: ControlPlaneOptions): ControlPlane {
  const {
    baseUrl,
    secret,
    fetch: doFetch = fetch,
    attempts: defaultAttempts = 6,
    baseDelayMs = 250,
    maxDelayMs = 8_000,
    timeoutMs = 15_000,
  } = options;
  const url = new URL(MACHINE_EVENTS_PATH, baseUrl).toString();

  return {
    async send(event, { attempts = defaultAttempts } = {}) {
      const rawBody = JSON.stringify(event);
      let lastError: unknown;
      for (let attempt = 1; attempt <= attempts; attempt++) {
        if (attempt > 1) {
          const delay = Math.min(maxDelayMs, baseDelayMs * 2 ** (attempt - 2));
          await sleep(delay / 2 + Math.random() * (delay / 2));
        }
        let response: Response;
        try {
          // Signed per attempt: a retry hours later must not carry a stale timestamp.
          response = await doFetch(url, {
            method: "POST",
            headers: { "content-type": "application/json", [SIGNATURE_HEADER]: await signPayload(secret, rawBody) },
            body: rawBody,
            signal: AbortSignal.timeout(timeoutMs),
          });
        } catch (error) {
          lastError = error;
          continue;
        }
        const text = await response.text();
        if (response.status >= 500 || response.status === 429) {
          lastError = new Error(`control plane answered ${response.status}`);
          continue;
        }
        if (!response.ok) throw new ControlPlaneRefusedError(response.status, text);
        const parsed = MachineEventResponse.safeParse(safeJson(text));
        if (!parsed.success) throw new ControlPlaneRefusedError(response.status, `unexpected answer: ${text}`);
        return parsed.data;
      }
      throw new Error(`could not deliver ${event.type} for job ${event.jobId} after ${attempts} attempts`, {
        cause: lastError,
      });
    },
  };
}

const safeJson = (text: string): unknown => {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
};
