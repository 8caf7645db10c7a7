/**
 * Consumer of the uploads queue (R2 object-created notifications for `inputs/<jobId>/<name>`).
 * Each message is acknowledged or retried on its own: an upload moves its job
 * `awaiting_upload → pending` once (duplicates and replays are acknowledged no-ops), messages
 * about other keys or actions are acknowledged and logged, bodies that are not R2 events are
 * retried until the queue dead-letters them, and Redis failures are retried with a delay.
 */

import { admitMachines } from "../admission/index.ts";
import { type Env, parseSettings } from "../bindings.ts";
import { R2EventNotification, r2ObjectCreateActions } from "../contract/index.ts";
import { createFlyClient, type FlyClient } from "../fly/client.ts";
import { redisFromSettings } from "../http/context.ts";
import { log } from "../http/logging.ts";
import { jobIdFromInputKey, markUploaded, type StateRedis } from "../state/index.ts";

/** The part of a workers-types `Message` this consumer uses. */
export interface UploadMessage {
  readonly id: string;
  readonly body: unknown;
  readonly attempts: number;
  ack(): void;
  retry(options?: { delaySeconds?: number }): void;
}

export interface UploadBatch {
  readonly queue: string;
  readonly messages: readonly UploadMessage[];
}

export interface UploadConsumerDeps {
  redis?: StateRedis;
  fly?: FlyClient;
  nowMs?: () => number;
}

/** Delay before redelivering after a transient failure: 2 s, 4 s, 8 s … capped at a minute. */
export const transientRetryDelaySeconds = (attempts: number): number => Math.min(60, 2 ** Math.max(1, attempts));

const isCreate = (action: string) => (r2ObjectCreateActions as readonly string[]).includes(action);

export async function handleUploadEvents(batch: UploadBatch, env: Env, deps: UploadConsumerDeps = {}): Promise<void> {
  const settings = parseSettings(env);
  const redis = deps.redis ?? redisFromSettings(settings);
  const now = deps.nowMs ?? Date.now;
  const say = (level: "info" | "warn" | "error", fields: Record<string, unknown>) =>
    log(settings.LOG_LEVEL, level, "queue", fields);
  let queued = 0;

  for (const message of batch.messages) {
    const parsed = R2EventNotification.safeParse(message.body);
    if (!parsed.success) {
      say("warn", { event: "upload_event_invalid", messageId: message.id, attempts: message.attempts });
      message.retry();
      continue;
    }
    const event = parsed.data;
    const jobId = jobIdFromInputKey(event.object.key);
    if (!isCreate(event.action) || event.bucket !== settings.INPUT_BUCKET || jobId === null) {
      say("info", {
        event: "upload_event_ignored",
        messageId: message.id,
        action: event.action,
        bucket: event.bucket,
        key: event.object.key,
      });
      message.ack();
      continue;
    }
    try {
      const result = await markUploaded(redis, jobId, { sizeBytes: event.object.size, eTag: event.object.eTag }, now());
      say("info", { event: "upload_event", messageId: message.id, jobId, result });
      if (result === "queued") queued++;
      message.ack();
    } catch (err) {
      say("error", {
        event: "upload_event_failed",
        messageId: message.id,
        jobId,
        attempts: message.attempts,
        error: err instanceof Error ? err.message : String(err),
      });
      message.retry({ delaySeconds: transientRetryDelaySeconds(message.attempts) });
    }
  }

  if (queued > 0) await admitMachines(settings, redis, deps.fly ?? createFlyClient(settings), now(), "queue");
}
