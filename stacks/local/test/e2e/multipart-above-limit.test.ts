/**
 * Above the stack's SINGLE_PUT_MAX_BYTES the API signs no single PUT (R2 takes at most 4.995 GiB in
 * one), and every client it ships sends such a source in parts: the SDK whatever its own
 * threshold, and `tcoder transcode --api`. A multipart object's ETag ends in `-<parts>`, which is
 * how the store's copy tells which way it came. The stack's limit is lowered so a small clip is over it.
 */
import { execFile } from "node:child_process";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { HeadObjectCommand } from "@aws-sdk/client-s3";
import { createClient } from "@tcoder/client/node";
import type { Job } from "@tcoder/worker/contract";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LocalStack, repoRoot, startLocalStack } from "../../src/stack.ts";
import { makeClip } from "./clips.ts";

const run = promisify(execFile);
const tcoder = join(repoRoot, "stacks", "local", "bin", "tcoder.mjs");
const singlePutMaxBytes = 64 * 1024;

let dir: string;
let stack: LocalStack;
let clip: string;
let clipBytes: number;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "tcoder-multipart-"));
  [clip, stack] = await Promise.all([
    makeClip(join(dir, "clip.mp4"), { seconds: 2 }),
    startLocalStack({
      dir: join(dir, "stack"),
      maxMachines: 1,
      cronIntervalMs: 1_000,
      vars: { SINGLE_PUT_MAX_BYTES: String(singlePutMaxBytes), DEFAULT_PRESET: "hls-small" },
      machineEnv: { X264_PRESET: "ultrafast" },
    }),
  ]);
  clipBytes = (await stat(clip)).size;
}, 120_000);

afterAll(async () => {
  await stack?.stop();
  await rm(dir, { recursive: true, force: true });
});

const inputEtag = async (job: Job) =>
  (await stack.cloud.s3.send(new HeadObjectCommand({ Bucket: stack.cloud.settings.INPUT_BUCKET, Key: job.input.key })))
    .ETag;

describe("a source over SINGLE_PUT_MAX_BYTES", () => {
  it("gets no single-PUT URL from POST /v1/uploads, and one at the limit does", async () => {
    expect(clipBytes).toBeGreaterThan(singlePutMaxBytes);
    const ask = async (size: number) => {
      const response = await fetch(`${stack.cloud.apiUrl}/v1/uploads`, {
        method: "POST",
        headers: { authorization: `Bearer ${stack.cloud.apiToken}`, "content-type": "application/json" },
        body: JSON.stringify({ filename: "clip.mp4", contentType: "video/mp4", size }),
      });
      expect(response.status).toBe(201);
      return ((await response.json()) as { upload: { method: string } | null }).upload;
    };
    expect(await ask(singlePutMaxBytes + 1)).toBeNull();
    expect(await ask(singlePutMaxBytes)).toMatchObject({ method: "PUT" });
  });

  it("goes up in parts through the SDK even when its own threshold is higher", async () => {
    const client = createClient({ baseUrl: stack.cloud.apiUrl, token: stack.cloud.apiToken });
    const job = await client.upload(clip, { multipartThreshold: 1024 ** 3 });
    expect(await inputEtag(job)).toMatch(/-1"$/);
  });

  it("goes up in parts through `tcoder transcode --api`, and the job completes", async () => {
    const result = await run(
      process.execPath,
      [tcoder, "transcode", clip, "--api", stack.cloud.apiUrl, "--token", stack.cloud.apiToken, "--json"],
      { cwd: dir, maxBuffer: 16 * 1024 * 1024, timeout: 240_000 },
    );
    const job = JSON.parse(result.stdout) as Job;
    expect(job.state).toBe("completed");
    expect(await inputEtag(job)).toMatch(/-1"$/);
  }, 300_000);
});
