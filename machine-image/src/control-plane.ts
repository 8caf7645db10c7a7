/**
 * The machine's only way to tell the control plane anything: signed `POST /v1/machine-events`.
 * Network errors and 5xx/429 are retried with backoff (the control plane may be redeploying);
 * any other refusal is final and surfaces as ControlPlaneRefusedError.
 */
import {
  MACHINE_EVENTS_PATH,
  type MachineEvent,
  MachineEventResponse,
  retry,
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
      const deliver = async (): Promise<MachineEventResponse> => {
        // Signed per attempt: a retry hours later must not carry a stale timestamp.
        const response = await doFetch(url, {
          method: "POST",
          headers: { "content-type": "application/json", [SIGNATURE_HEADER]: await signPayload(secret, rawBody) },
          body: rawBody,
          signal: AbortSignal.timeout(timeoutMs),
        });
        const text = await response.text();
        if (response.status >= 500 || response.status === 429)
          throw new Error(`control plane answered ${response.status}`);
        if (!response.ok) throw new ControlPlaneRefusedError(response.status, text);
        const parsed = MachineEventResponse.safeParse(safeJson(text));
        if (!parsed.success) throw new ControlPlaneRefusedError(response.status, `unexpected answer: ${text}`);
        return parsed.data;
      };
      return retry(deliver, {
        attempts,
        baseDelayMs,
        maxDelayMs,
        // A refusal is final; a network failure, a 5xx or a 429 is the control plane redeploying.
        retryIf: (error) => !(error instanceof ControlPlaneRefusedError),
      }).catch((error: unknown) => {
        if (error instanceof ControlPlaneRefusedError) throw error;
        throw new Error(`could not deliver ${event.type} for job ${event.jobId} after ${attempts} attempts`, {
          cause: error,
        });
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
