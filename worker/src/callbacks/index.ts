/**
 * Client callbacks: one queue message per job that reached a terminal state, delivered as a
 * signed POST of the public job to its `callbackUrl`, retried with exponential backoff by the
 * queue, and recorded on the job as delivered or (after the last attempt) failed.
 */
import type { Redis } from "@upstash/redis/cloudflare";
import type { Env, Settings } from "../bindings.ts";
import { parseSettings, queues } from "../bindings.ts";
import { type Job, type JobState, SIGNATURE_HEADER, signPayload } from "../contract/index.ts";
import { redisFromSettings } from "../http/context.ts";
import { log } from "../http/logging.ts";
import { presentJob } from "../http/present-job.ts";
import type { StoredJob } from "../state/index.ts";
import { getJob, recordCallbackState } from "../state/index.ts";

export interface CallbackMessage {
  jobId: string;
  state: JobState;
  /** The job's attempt count when it ended; a retried job's older callbacks are dropped. */
  attempt: number;
}

export interface CallbackPayload {
  type: `job.${JobState}`;
  job: Job;
}

export const CALLBACK_TIMEOUT_MS = 10_000;
const BASE_DELAY_SECONDS = 10;
const MAX_DELAY_SECONDS = 3600;

/** Delay before the next delivery after `attempts` failed ones: 10 s, 20 s, 40 s … capped at an hour. */
export const backoffSeconds = (attempts: number): number =>
  Math.min(MAX_DELAY_SECONDS, BASE_DELAY_SECONDS * 2 ** Math.max(0, attempts - 1));

export async function enqueueCallback(env: Pick<Env, "CALLBACKS_QUEUE">, job: StoredJob): Promise<void> {
  if (!job.callbackUrl) return;
  const message: CallbackMessage = { jobId: job.id, state: job.state, attempt: job.attempts };
  await env.CALLBACKS_QUEUE.send(message);
}

/** The structural part of a queue message this consumer uses (workers-types `Message`). */
export interface CallbackQueueMessage {
  readonly body: unknown;
  readonly attempts: number;
  ack(): void;
  retry(options?: { delaySeconds?: number }): void;
}

export type DeliveryResult = { ok: true; status: number } | { ok: false; error: string };

export async function deliverCallback(
  url: string,
  secret: string,
  payload: CallbackPayload,
  nowSeconds = Math.floor(Date.now() / 1000),
): Promise<DeliveryResult> {
  const body = JSON.stringify(payload);
  try {
    const res = await fetch(url, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "user-agent": "tcoder-callbacks/1",
        [SIGNATURE_HEADER]: await signPayload(secret, body, nowSeconds),
      },
      body,
      // A redirect could lead to an address the callbackUrl check would have refused.
      redirect: "manual",
      signal: AbortSignal.timeout(CALLBACK_TIMEOUT_MS),
    });
    await res.body?.cancel();
    if (res.status >= 200 && res.status < 300) return { ok: true, status: res.status };
    return { ok: false, error: `answered ${res.status}` };
  } catch (err) {
    const name = err instanceof Error ? err.name : "";
    if (name === "TimeoutError" || name === "AbortError")
      return { ok: false, error: `no answer within ${CALLBACK_TIMEOUT_MS / 1000} s` };
    return { ok: false, error: `network error: ${err instanceof Error ? err.message : String(err)}` };
  }
}

const isCallbackMessage = (body: unknown): body is CallbackMessage =>
  typeof body === "object" &&
  body !== null &&
  typeof (body as CallbackMessage).jobId === "string" &&
  typeof (body as CallbackMessage).state === "string" &&
  typeof (body as CallbackMessage).attempt === "number";

export async function handleCallbackBatch(
  batch: { readonly messages: readonly CallbackQueueMessage[] },
  env: Env,
): Promise<void> {
  const settings = parseSettings(env);
  const redis = redisFromSettings(settings);
  for (const message of batch.messages) {
    try {
      await deliverMessage(message, settings, redis);
    } catch (err) {
      // Redis or the record write failed: let the queue deliver this message again later.
      log(env.LOG_LEVEL, "error", "callbacks", {
        event: "callback_consumer_error",
        error: err instanceof Error ? `${err.name}: ${err.message}` : "non-error thrown",
      });
      message.retry({ delaySeconds: backoffSeconds(message.attempts) });
    }
  }
}

async function deliverMessage(message: CallbackQueueMessage, settings: Settings, redis: Redis): Promise<void> {
  if (!isCallbackMessage(message.body)) {
    message.ack();
    return;
  }
  const { jobId, state, attempt } = message.body;
  const job = await getJob(redis, jobId);
  // Gone, retried since, or without a URL: nothing left to tell the client about this outcome.
  if (!job?.callbackUrl || job.state !== state || job.attempts !== attempt) {
    message.ack();
    return;
  }
  const payload: CallbackPayload = { type: `job.${state}`, job: presentJob(settings, job) };
  const result = await deliverCallback(job.callbackUrl, settings.CALLBACK_SIGNING_SECRET, payload);
  if (result.ok) {
    await recordCallbackState(redis, jobId, { state: "delivered", attempts: message.attempts });
    message.ack();
  } else if (message.attempts >= queues.callbacks.maxRetries) {
    await recordCallbackState(redis, jobId, { state: "failed", attempts: message.attempts, lastError: result.error });
    log(settings.LOG_LEVEL, "warn", "callbacks", { event: "callback_given_up", jobId, attempts: message.attempts });
    message.ack();
  } else {
    await recordCallbackState(redis, jobId, { state: "pending", attempts: message.attempts, lastError: result.error });
    message.retry({ delaySeconds: backoffSeconds(message.attempts) });
  }
}
