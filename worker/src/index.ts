/** The worker: HTTP API, the two queue consumers, and the minute cron. */
import { app } from "./app.ts";
import type { Env } from "./bindings.ts";
import { queueKeyOf } from "./bindings.ts";
import { type CallbackMessage, handleCallbackBatch } from "./callbacks/index.ts";
import type { R2EventNotification } from "./contract/index.ts";
import { runScheduled } from "./cron/index.ts";
import { handleUploadEvents } from "./queue/uploads-consumer.ts";

export default {
  fetch: app.fetch,

  async queue(batch: MessageBatch<unknown>, env: Env): Promise<void> {
    const key = queueKeyOf(batch.queue);
    if (key === "uploads") return handleUploadEvents(batch as MessageBatch<R2EventNotification>, env);
    if (key === "callbacks") return handleCallbackBatch(batch as MessageBatch<CallbackMessage>, env);
    throw new Error(`no consumer for queue ${batch.queue}`);
  },

  async scheduled(_controller: ScheduledController, env: Env): Promise<void> {
    await runScheduled(env, Date.now());
  },
} satisfies ExportedHandler<Env>;
