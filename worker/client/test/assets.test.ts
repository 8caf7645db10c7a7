/**
 * Managing assets through the SDK against the real local stack (workerd, redis-server, the S3
 * store, machine processes running ffmpeg): deleting a completed and a running job leaves no
 * object under their prefixes; a source ingested from a URL transcodes, and one that redirects to a
 * private address or grows past MAX_UPLOAD_BYTES while it downloads fails with its code.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { HeadObjectCommand, ListObjectsV2Command } from "@aws-sdk/client-s3";
import { type LocalStack, startLocalStack } from "@tcoder/local/stack";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient, type Job } from "../src/node.ts";
import { makeClip } from "./media.ts";

let dir: string;
let stack: LocalStack;
let client: ReturnType<typeof createClient>;
let shortClip: string;
let longClip: string;
const machineLines: string[] = [];
/** A web server apps' sources live on: the clip, a redirect into the cloud's metadata range, an endless body. */
let media: Server;
let mediaUrl: string;
const MAX_UPLOAD_BYTES = 40 * 1024 * 1024;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "tcoder-assets-"));
  [shortClip, longClip] = await Promise.all([
    makeClip(join(dir, "short.mp4")),
    makeClip(join(dir, "long.mp4"), { seconds: 60, size: "640x360" }),
  ]);
  stack = await startLocalStack({
    dir: join(dir, "stack"),
    maxMachines: 1,
    cronIntervalMs: 500,
    vars: { DEFAULT_PRESET: "hls-small", JOB_LEASE_SECONDS: "6", MAX_UPLOAD_BYTES: String(MAX_UPLOAD_BYTES) },
    machineEnv: { X264_PRESET: "ultrafast", POLL_MIN_MS: "200", POLL_MAX_MS: "1000" },
    log: (source, line) => source.startsWith("machine ") && machineLines.push(line),
  });
  client = createClient({ baseUrl: stack.cloud.apiUrl, token: stack.cloud.apiToken });
  const clipBytes = await readFile(shortClip);
  media = createServer((req, res) => {
    if (req.url === "/films/short.mp4")
      return void res
        .writeHead(200, { "content-type": "video/mp4", "content-length": clipBytes.length })
        .end(clipBytes);
    if (req.url === "/metadata")
      return void res.writeHead(302, { location: "http://169.254.169.254/latest/meta-data/iam/" }).end();
    if (req.url === "/endless") {
      res.writeHead(200, { "content-type": "video/mp4" });
      const chunk = Buffer.alloc(256 * 1024, 1);
      const pump = () => {
        while (!res.destroyed && res.write(chunk));
        if (!res.destroyed) res.once("drain", pump);
      };
      req.socket.on("close", () => res.destroy());
      return pump();
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => media.listen(0, "127.0.0.1", resolve));
  mediaUrl = `http://127.0.0.1:${(media.address() as AddressInfo).port}`;
});

afterAll(async () => {
  media?.closeAllConnections();
  await new Promise((resolve) => (media ? media.close(resolve) : resolve(undefined)));
  await stack?.stop();
  await rm(dir, { recursive: true, force: true });
});

/** Every object of a job in either bucket (sources under inputs/, packages under outputs/). */
async function objectsOf(jobId: string): Promise<string[]> {
  const { s3, settings } = stack.cloud;
  const listed = await Promise.all(
    [
      [settings.INPUT_BUCKET, `inputs/${jobId}/`],
      [settings.OUTPUT_BUCKET, `outputs/${jobId}/`],
    ].map(([Bucket, Prefix]) => s3.send(new ListObjectsV2Command({ Bucket, Prefix }))),
  );
  return listed.flatMap((page) => (page.Contents ?? []).map((object) => object.Key ?? ""));
}

const purged = async (jobId: string): Promise<Job> => {
  await expect.poll(async () => (await client.getJob(jobId)).purgedAt, { timeout: 60_000, interval: 250 }).toBeTruthy();
  return client.getJob(jobId);
};

describe("delete", () => {
  it("removes a completed job's source and package and leaves a tombstone", async () => {
    const uploaded = await client.upload(shortClip);
    const done = await client.waitForJob(uploaded.id, { timeout: 150_000 });
    expect(done.state).toBe("completed");
    const master = done.outputs?.hlsMaster?.url as string;
    expect((await fetch(master)).status).toBe(200);
    expect((await objectsOf(done.id)).length).toBeGreaterThan(5);

    await client.deleteJob(done.id);
    const tombstone = await purged(done.id);
    expect(tombstone).toMatchObject({ state: "deleted", preset: done.preset, attempts: 1 });
    expect(tombstone.outputs).toBeUndefined();
    expect(await objectsOf(done.id)).toEqual([]);
    expect((await fetch(master)).status).toBe(404);
    await client.deleteJob(done.id);
    expect((await client.getJob(done.id)).state).toBe("deleted");
  });

  it("stops a running job's machine and removes everything it wrote, even after the delete", async () => {
    const uploaded = await client.upload(longClip);
    await expect
      .poll(async () => (await client.getJob(uploaded.id)).stage, { timeout: 120_000, interval: 100 })
      .toBe("transcoding");

    await client.deleteJob(uploaded.id);
    expect((await client.getJob(uploaded.id)).state).toBe("deleted");
    await expect
      .poll(() => machineLines.some((line) => line.includes(uploaded.id) && line.includes("abort")), {
        timeout: 30_000,
      })
      .toBe(true);
    const tombstone = await purged(uploaded.id);
    expect(tombstone.state).toBe("deleted");
    expect(await objectsOf(uploaded.id)).toEqual([]);
    // The machine is free again: a new job runs to completion.
    const next = await client.upload(shortClip);
    expect((await client.waitForJob(next.id, { timeout: 150_000 })).state).toBe("completed");
  });
});

describe("ingest from a URL", () => {
  it("downloads the source on the machine, keeps it under inputs/ and transcodes it", async () => {
    const created = await client.createJobFromUrl(`${mediaUrl}/films/short.mp4`, { metadata: { from: "url" } });
    expect(created).toMatchObject({
      state: "pending",
      input: { url: `${mediaUrl}/films/short.mp4`, filename: "short.mp4", key: `inputs/${created.id}/short.mp4` },
    });
    const done = await client.waitForJob(created.id, { timeout: 150_000 });
    expect(done.state).toBe("completed");
    expect(done.probe?.durationSeconds).toBeCloseTo(2, 0);
    const kept = await stack.cloud.s3.send(
      new HeadObjectCommand({ Bucket: stack.cloud.settings.INPUT_BUCKET, Key: created.input.key }),
    );
    expect(kept.ContentLength).toBe((await readFile(shortClip)).length);
  });

  it("fails with source_unreachable when the URL redirects into a private range, without retrying", async () => {
    const created = await client.createJobFromUrl(`${mediaUrl}/metadata`);
    const done = await client.waitForJob(created.id, { timeout: 120_000 });
    expect(done).toMatchObject({ state: "failed", attempts: 1, error: { code: "source_unreachable" } });
    expect(done.error?.message).toContain("redirected to a refused URL");
  });

  it("fails with source_too_large when the source grows past MAX_UPLOAD_BYTES while it downloads", async () => {
    const created = await client.createJobFromUrl(`${mediaUrl}/endless`);
    const done = await client.waitForJob(created.id, { timeout: 120_000 });
    expect(done).toMatchObject({
      state: "failed",
      attempts: 1,
      error: { code: "source_too_large", message: `the source grew past the limit of ${MAX_UPLOAD_BYTES} bytes` },
    });
    expect(await objectsOf(created.id)).toEqual([]);
  });
});

describe("cost per job", () => {
  it("records machine time per attempt, output minutes and bytes stored, and totals them in stats", async () => {
    const uploaded = await client.upload(shortClip);
    const done = await client.waitForJob(uploaded.id, { timeout: 150_000 });
    expect(done.state).toBe("completed");
    const usage = done.usage;
    expect(usage?.attempts).toEqual([expect.objectContaining({ attempt: 1, outcome: "completed" })]);
    expect(usage?.machineSeconds).toBeGreaterThan(0);
    expect(usage?.machineSeconds).toBe(usage?.attempts[0]?.seconds);
    expect(usage?.outputMinutes).toBeCloseTo(2 / 60, 2);
    const stored = await objectsOf(done.id);
    expect(stored.length).toBeGreaterThan(0);
    expect(usage?.storedBytes).toBeGreaterThan((await readFile(shortClip)).length);

    const stats = await client.stats();
    expect(stats.usage.last24Hours.jobsCompleted).toBeGreaterThanOrEqual(1);
    expect(stats.usage.last24Hours.machineSeconds).toBeGreaterThanOrEqual(usage?.machineSeconds ?? 0);
    expect(stats.usage.storedBytes).toBeGreaterThanOrEqual(usage?.storedBytes ?? 0);
    const { estimateUsd, prices } = stats.usage;
    expect(estimateUsd.last30Days.machines).toBeCloseTo(
      stats.usage.last30Days.machineSeconds * prices.machineSecondUsd,
      9,
    );
    expect(estimateUsd.last30Days.total).toBeGreaterThan(0);
  });
});
