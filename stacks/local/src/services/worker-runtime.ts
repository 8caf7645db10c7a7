/**
 * The control-plane worker bundle running in workerd through Miniflare, bound exactly as
 * `@tcoder/worker/bindings` declares (vars, secrets, queues, producers, crons, compatibility),
 * and reachable over real HTTP so machine processes can post their events to it.
 */
import { randomUUID } from "node:crypto";
import { dirname } from "node:path";
import { createInterface } from "node:readline";
import type { Readable } from "node:stream";
import { compatibilityDate, compatibilityFlags, crons, queueProducers, queues } from "@tcoder/worker/bindings";
import { Miniflare, type WorkerOptions } from "miniflare";

/** A side worker owned by the local stack: producers for every queue, consumer of the DLQs. */
const queueHelperName = "tcoder-local-queues";

type QueueDeclaration = (typeof queues)[keyof typeof queues];
const queueDeclarations: QueueDeclaration[] = Object.values(queues);
const consumedQueueNames = queueDeclarations.map((q) => q.name);
const deadLetterQueueNames = queueDeclarations.map((q) => q.deadLetterQueue);
const allQueueNames: string[] = [...consumedQueueNames, ...deadLetterQueueNames];
/** Binding names in the helper worker are derived, so any queue name works. */
const helperProducerBinding = (queueName: string) => `Q_${queueName.replace(/[^A-Za-z0-9]/g, "_").toUpperCase()}`;

const queueHelperScript = `
const deadLetters = {};
export default {
  async fetch(request) {
    const queue = new URL(request.url).searchParams.get("queue");
    return Response.json(deadLetters[queue] ?? []);
  },
  async queue(batch) {
    const list = (deadLetters[batch.queue] ??= []);
    for (const message of batch.messages) {
      list.push({ id: message.id, body: message.body, attempts: message.attempts, timestamp: message.timestamp.toISOString() });
      message.ack();
    }
  },
};
`;

export interface QueueMessageInput<Body = unknown> {
  body: Body;
  id?: string;
  timestamp?: Date;
  attempts?: number;
}

/** What the worker's queue handler decided about a directly delivered batch. */
export interface QueueDeliveryResult {
  outcome: string;
  ackAll: boolean;
  retryBatch: { retry: boolean; delaySeconds?: number };
  explicitAcks: string[];
  retryMessages: { msgId: string; delaySeconds?: number }[];
}

export interface DeadLetter<Body = unknown> {
  id: string;
  body: Body;
  attempts: number;
  timestamp: string;
}

export interface StartWorkerRuntimeOptions {
  /** ES module bundle of the worker (`buildWorkerBundle().path`). */
  scriptPath: string;
  vars: Record<string, string>;
  secrets: Record<string, string>;
  port?: number;
  /** When set, the worker's scheduled handler runs this often (the local stand-in for cron). */
  cronIntervalMs?: number;
  /** Receives each line the worker logs (console.*); default: Miniflare prints them. */
  log?: (stream: "stdout" | "stderr", line: string) => void;
  /** Receives failures of the cron loop; default logs to stderr. */
  onCronError?: (error: unknown) => void;
}

export interface WorkerRuntime {
  /** http://127.0.0.1:<port> — the worker over real HTTP. */
  url: string;
  dispatchFetch(input: string | URL, init?: RequestInit): Promise<Response>;
  /** Runs the worker's scheduled handler now, with the declared cron. */
  scheduled(options?: { cron?: string; scheduledTime?: Date }): Promise<{ outcome: string; noRetry: boolean }>;
  /** Delivers a batch straight to the queue handler (no batching, no retries). */
  queue<Body>(queueName: string, messages: QueueMessageInput<Body>[]): Promise<QueueDeliveryResult>;
  /** Enqueues through the real queue: the consumer sees it after batching, with retries and DLQ. */
  sendToQueue(queueName: string, body: unknown): Promise<void>;
  /** Messages that reached the dead-letter queue of a consumed queue (or a DLQ named directly). */
  readDeadLetters<Body = unknown>(queueName: string): Promise<DeadLetter<Body>[]>;
  stop(): Promise<void>;
}

function forwardLines(log: NonNullable<StartWorkerRuntimeOptions["log"]>) {
  return (stdout: Readable, stderr: Readable) => {
    createInterface({ input: stdout }).on("line", (line) => log("stdout", line));
    createInterface({ input: stderr }).on("line", (line) => log("stderr", line));
  };
}

export function workerQueueConsumers() {
  return Object.fromEntries(
    queueDeclarations.map((q) => [
      q.name,
      {
        maxBatchSize: q.maxBatchSize,
        maxBatchTimeout: q.maxBatchTimeoutSeconds,
        maxRetries: q.maxRetries,
        deadLetterQueue: q.deadLetterQueue,
      },
    ]),
  );
}

export async function startWorkerRuntime(opts: StartWorkerRuntimeOptions): Promise<WorkerRuntime> {
  const overlap = Object.keys(opts.vars).filter((name) => name in opts.secrets);
  if (overlap.length > 0) throw new Error(`worker-runtime: names bound as both var and secret: ${overlap.join(", ")}`);

  const controlPlane: WorkerOptions = {
    name: "tcoder",
    modules: true,
    scriptPath: opts.scriptPath,
    // Module names are paths relative to this root; workerd refuses names that climb out with "..".
    modulesRoot: dirname(opts.scriptPath),
    compatibilityDate,
    compatibilityFlags: [...compatibilityFlags],
    bindings: { ...opts.vars, ...opts.secrets },
    queueProducers: Object.fromEntries(
      Object.entries(queueProducers).map(([binding, queueName]) => [binding, { queueName }]),
    ),
    queueConsumers: workerQueueConsumers(),
  };
  const queueHelper: WorkerOptions = {
    name: queueHelperName,
    modules: true,
    script: queueHelperScript,
    compatibilityDate,
    queueProducers: Object.fromEntries(allQueueNames.map((name) => [helperProducerBinding(name), { queueName: name }])),
    queueConsumers: deadLetterQueueNames,
  };

  const mf = new Miniflare({
    host: "127.0.0.1",
    port: opts.port ?? 0,
    workers: [controlPlane, queueHelper],
    ...(opts.log ? { handleRuntimeStdio: forwardLines(opts.log) } : {}),
  });
  let ready: URL;
  try {
    ready = await mf.ready;
  } catch (err) {
    await mf.dispose().catch(() => {});
    throw err;
  }
  const url = ready.origin;

  const runScheduled: WorkerRuntime["scheduled"] = async (options = {}) => {
    const worker = await mf.getWorker("tcoder");
    return worker.scheduled({ cron: options.cron ?? crons[0], scheduledTime: options.scheduledTime ?? new Date() });
  };

  let cronTimer: NodeJS.Timeout | undefined;
  let cronRun: Promise<void> | undefined;
  if (opts.cronIntervalMs) {
    let running = false;
    cronTimer = setInterval(() => {
      // A slow run is not overlapped: the next tick comes after it, as one cron trigger at a time.
      if (running) return;
      running = true;
      cronRun = runScheduled()
        .then((result) => {
          if (result.outcome !== "ok") throw new Error(`scheduled handler outcome: ${result.outcome}`);
        })
        .catch(opts.onCronError ?? ((err) => console.error("[worker-runtime] cron:", err)))
        .finally(() => {
          running = false;
        });
    }, opts.cronIntervalMs);
  }

  return {
    url,
    dispatchFetch: async (input, init) => {
      // Miniflare's undici types differ from the global ones only nominally.
      const response = await mf.dispatchFetch(String(input), init as Parameters<typeof mf.dispatchFetch>[1]);
      return response as unknown as Response;
    },
    scheduled: runScheduled,
    async queue(queueName, messages) {
      const worker = await mf.getWorker("tcoder");
      return worker.queue(
        queueName,
        messages.map((m) => ({
          id: m.id ?? randomUUID(),
          timestamp: m.timestamp ?? new Date(),
          attempts: m.attempts ?? 1,
          body: m.body,
        })),
      );
    },
    async sendToQueue(queueName, body) {
      if (!allQueueNames.includes(queueName)) throw new Error(`worker-runtime: unknown queue ${queueName}`);
      const producer = await mf.getQueueProducer(helperProducerBinding(queueName), queueHelperName);
      await producer.send(body);
    },
    async readDeadLetters<Body>(queueName: string) {
      const dlq = queueDeclarations.find((q) => q.name === queueName)?.deadLetterQueue ?? queueName;
      const helper = await mf.getWorker(queueHelperName);
      const response = await helper.fetch(`http://dlq.local/?queue=${encodeURIComponent(dlq)}`);
      return (await response.json()) as DeadLetter<Body>[];
    },
    async stop() {
      clearInterval(cronTimer);
      // A run in flight finishes first (for a while), so disposing does not cut it off mid-request.
      await Promise.race([cronRun, new Promise((resolve) => setTimeout(resolve, 10_000).unref())]);
      await mf.dispose();
    },
  };
}
