import { copyFile, mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { crons, queues } from "@tcoder/worker/bindings";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startWorkerRuntime, type WorkerRuntime } from "../src/services/worker-runtime.ts";

const scriptPath = fileURLToPath(new URL("./fixtures/recording-worker.mjs", import.meta.url));

interface Received {
  queue: { queue: string; body: unknown; attempts: number }[];
  scheduled: { cron: string; scheduledTime: number }[];
}

describe("worker runtime (workerd via Miniflare)", () => {
  let runtime: WorkerRuntime;
  const received = async (): Promise<Received> => (await fetch(`${runtime.url}/received`)).json() as Promise<Received>;

  beforeAll(async () => {
    runtime = await startWorkerRuntime({
      scriptPath,
      vars: { INPUT_BUCKET: "tcoder-inputs", LOG_LEVEL: "debug" },
      secrets: { API_TOKEN: "secret-token-0123456789" },
    });
  });
  afterAll(async () => {
    await runtime?.stop();
  });

  it("serves the worker over real HTTP on 127.0.0.1 with vars and secrets bound as strings", async () => {
    expect(runtime.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const hello = await fetch(`${runtime.url}/anything`, { method: "POST" });
    expect(await hello.text()).toBe("hello from POST /anything");
    const env = await (
      await runtime.dispatchFetch(`${runtime.url}/env?name=INPUT_BUCKET&name=API_TOKEN&name=CALLBACKS_QUEUE`)
    ).json();
    expect(env).toEqual({
      INPUT_BUCKET: "tcoder-inputs",
      API_TOKEN: "secret-token-0123456789",
      CALLBACKS_QUEUE: "object",
    });
  });

  it("lets the worker fetch services on the loopback address", async () => {
    const service = createServer((_req, res) => res.end("from loopback"));
    await new Promise<void>((resolve) => service.listen(0, "127.0.0.1", resolve));
    try {
      const target = `http://127.0.0.1:${(service.address() as AddressInfo).port}/`;
      const answer = await fetch(`${runtime.url}/outbound?url=${encodeURIComponent(target)}`);
      expect(await answer.text()).toBe("from loopback");
    } finally {
      service.close();
    }
  });

  it("runs the scheduled handler with the declared cron on demand", async () => {
    const result = await runtime.scheduled();
    expect(result.outcome).toBe("ok");
    expect((await received()).scheduled.at(-1)?.cron).toBe(crons[0]);
  });

  it("delivers a batch directly to the queue handler and reports acks", async () => {
    const result = await runtime.queue(queues.uploads.name, [{ id: "m1", body: { hello: "direct" } }]);
    expect(result.outcome).toBe("ok");
    expect(result.explicitAcks).toEqual(["m1"]);
    expect((await received()).queue).toContainEqual({
      queue: queues.uploads.name,
      body: { hello: "direct" },
      attempts: 1,
    });
  });

  it("sendToQueue goes through the real queue and reaches the consumer with batch.queue set", async () => {
    await runtime.sendToQueue(queues.uploads.name, { hello: "queued" });
    await expect
      .poll(async () => (await received()).queue.filter((m) => (m.body as { hello?: string }).hello === "queued"), {
        timeout: 15_000,
        interval: 250,
      })
      .toEqual([{ queue: queues.uploads.name, body: { hello: "queued" }, attempts: 1 }]);
  });

  it("the worker's own producer binding feeds its consumer", async () => {
    await fetch(`${runtime.url}/send-callback`, { method: "POST", body: JSON.stringify({ job: "j1" }) });
    await expect
      .poll(async () => (await received()).queue.filter((m) => m.queue === queues.callbacks.name), {
        timeout: 15_000,
        interval: 250,
      })
      .toContainEqual({ queue: queues.callbacks.name, body: { job: "j1" }, attempts: 1 });
  });

  it("a message retried maxRetries times lands in the dead-letter queue", async () => {
    const q = queues.callbacks;
    await runtime.sendToQueue(q.name, { fail: true, n: 1 });
    await expect
      .poll(async () => runtime.readDeadLetters(q.name), { timeout: 45_000, interval: 500 })
      .toEqual([expect.objectContaining({ body: { fail: true, n: 1 } })]);
    const attempts = (await received()).queue.filter((m) => (m.body as { n?: number }).n === 1).map((m) => m.attempts);
    expect(attempts).toEqual(Array.from({ length: q.maxRetries + 1 }, (_, i) => i + 1));
  }, 60_000);
});

describe("worker runtime startup", () => {
  it("runs a bundle that lives outside the working directory and forwards its console lines", async () => {
    const dir = await mkdtemp(join(tmpdir(), "worker-bundle-"));
    const lines: string[] = [];
    const runtime = await startWorkerRuntime({
      scriptPath: await copyInto(dir),
      vars: {},
      secrets: {},
      log: (stream, line) => lines.push(`${stream}: ${line}`),
    });
    try {
      expect(await (await fetch(`${runtime.url}/log?text=hello`)).text()).toBe("logged");
      await expect.poll(() => lines).toContain("stdout: worker says hello");
    } finally {
      await runtime.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });

  const copyInto = async (dir: string) => {
    const target = join(dir, "worker.js");
    await copyFile(scriptPath, target);
    return target;
  };
});

describe("worker runtime cron loop", () => {
  it("calls the scheduled handler every cronIntervalMs until stopped", async () => {
    const runtime = await startWorkerRuntime({ scriptPath, vars: {}, secrets: {}, cronIntervalMs: 200 });
    try {
      await expect
        .poll(async () => ((await (await fetch(`${runtime.url}/received`)).json()) as Received).scheduled.length, {
          timeout: 10_000,
        })
        .toBeGreaterThanOrEqual(2);
    } finally {
      await runtime.stop();
    }
  });
});
