/**
 * Bad input, from the request to the bytes: refused at the API with a clear 4xx when the request
 * itself is wrong, refused by the store when the bytes do not match what was signed, and ended as
 * `failed` with a stable code when the bytes are not media the machines will transcode. After all
 * of it, no secret the stack holds appears in any log line, job record or Redis file.
 */
import { readdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { HeadObjectCommand } from "@aws-sdk/client-s3";
import type { UploadCreated } from "@tcoder/client";
import { type SecretName, secrets as secretDeclarations } from "@tcoder/worker/bindings";
import type { Job } from "@tcoder/worker/contract";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeClip, makeCorruptFile } from "../e2e/clips.ts";
import {
  type FaultStack,
  makeTinyClip,
  startFaultStack,
  submitClip,
  waitFor,
  waitForTerminal,
} from "../reliability/harness.ts";

describe("bad uploads", () => {
  let fault: FaultStack;
  let tiny: string;

  const requestUpload = async (body: Record<string, unknown>) => {
    const { cloud } = fault.stack;
    const response = await fetch(`${cloud.apiUrl}/v1/uploads`, {
      method: "POST",
      headers: { authorization: `Bearer ${cloud.apiToken}`, "content-type": "application/json" },
      body: JSON.stringify({ filename: "clip.mp4", contentType: "video/mp4", size: 1000, ...body }),
    });
    return { status: response.status, body: (await response.json()) as { code?: string } & Partial<UploadCreated> };
  };

  beforeAll(async () => {
    fault = await startFaultStack("security-uploads", {
      vars: { MAX_UPLOAD_BYTES: String(50 * 1024 * 1024) },
      // Limits small enough that a tiny clip can break them.
      machineEnv: { MAX_PIXELS: String(320 * 240), MAX_DURATION_SECONDS: "6" },
    });
    tiny = await makeTinyClip(fault.dir);
  });
  afterAll(async () => {
    await fault?.stop();
  });

  it("refuses requests that cannot describe an acceptable upload with a 4xx and a stable code", async () => {
    const cases: [Record<string, unknown>, number, string][] = [
      [{ size: 0 }, 400, "invalid_request"],
      [{ size: -5 }, 400, "invalid_request"],
      [{ size: 1.5 }, 400, "invalid_request"],
      [{ size: 51 * 1024 * 1024 }, 413, "upload_too_large"],
      [{ filename: "../../etc/passwd.mp4" }, 400, "invalid_request"],
      [{ filename: "..\\..\\boot.ini" }, 400, "invalid_request"],
      [{ filename: ".." }, 400, "invalid_request"],
      [{ filename: "" }, 400, "invalid_request"],
      [{ filename: `${"a".repeat(996)}.mp4` }, 400, "invalid_request"],
      [{ filename: "clip\u0000.mp4" }, 400, "invalid_request"],
      [{ contentType: "application/pdf" }, 400, "unsupported_media_type"],
      [{ contentType: "video/mp4; rm -rf /" }, 400, "invalid_request"],
      [{ preset: "no-such-preset" }, 400, "unknown_preset"],
    ];
    for (const [body, status, code] of cases) {
      const answer = await requestUpload(body);
      expect([body, answer.status, answer.body.code]).toEqual([body, status, code]);
    }
  });

  it("keeps a unicode name on the job but only a safe derived name in the object key", async () => {
    const filename = "видео 🎬 ünïcödé — clip 日本.mp4";
    const id = await submitClip(fault, tiny, { filename });
    const [job] = (await waitForTerminal(fault.api, [id])) as [Job];
    expect(job.state).toBe("completed");
    expect(job.input.filename).toBe(filename);
    expect(job.input.key.startsWith(`inputs/${id}/`)).toBe(true);
    expect(job.input.key.slice(`inputs/${id}/`.length)).toMatch(/^[\p{L}\p{N}_-]+\.mp4$/u);
  });

  it("lets the store refuse bytes that do not match the declared size, leaving the job waiting", async () => {
    const { size } = await stat(tiny);
    const answer = await requestUpload({ size: size + 100 });
    expect(answer.status).toBe(201);
    const { jobId, upload } = answer.body as UploadCreated;
    if (upload === null) throw new Error("a tiny source gets a single PUT");
    const put = await fetch(upload.url, {
      method: "PUT",
      headers: { ...upload.headers, "content-length": String(size) },
      body: await readFile(tiny),
    });
    expect(put.status).toBeGreaterThanOrEqual(400);
    expect(put.status).toBeLessThan(500);
    // The store kept nothing, and it sends an event only for an object it keeps: no event can come.
    const { cloud } = fault.stack;
    const job = await fault.api.getJob(jobId);
    const head = await cloud.s3
      .send(new HeadObjectCommand({ Bucket: cloud.settings.INPUT_BUCKET, Key: job.input.key }))
      .catch((error: { $metadata?: { httpStatusCode?: number } }) => error.$metadata?.httpStatusCode);
    expect(head).toBe(404);
    expect(job.state).toBe("awaiting_upload");
  });

  it("fails non-media, truncated, oversized-frame and over-long sources with a stable code", async () => {
    const notMedia = await makeCorruptFile(join(fault.dir, "random.mp4"));
    const whole = await readFile(tiny);
    const truncated = join(fault.dir, "truncated.mp4");
    await writeFile(truncated, whole.subarray(0, Math.floor(whole.length / 2)));
    const huge = await makeClip(join(fault.dir, "huge.mp4"), { seconds: 1, size: "640x480", rate: 10 });
    const long = await makeClip(join(fault.dir, "long.mp4"), { seconds: 8, size: "160x120", rate: 10 });

    const ids = {
      notMedia: await submitClip(fault, notMedia),
      truncated: await submitClip(fault, truncated),
      huge: await submitClip(fault, huge),
      long: await submitClip(fault, long),
    };
    const jobs = Object.fromEntries(
      (await waitForTerminal(fault.api, Object.values(ids))).map((job) => [job.id, job]),
    ) as Record<string, Job>;
    const outcome = (id: string) => [jobs[id]?.state, jobs[id]?.error?.code, jobs[id]?.attempts];
    expect(outcome(ids.notMedia)).toEqual(["failed", "invalid_media", 1]);
    expect(outcome(ids.truncated)[0]).toBe("failed");
    expect(["invalid_media", "transcode_failed"]).toContain(outcome(ids.truncated)[1]);
    expect(outcome(ids.huge)).toEqual(["failed", "too_large", 1]);
    expect(jobs[ids.huge]?.error?.message).toMatch(/pixels|640/);
    expect(outcome(ids.long)).toEqual(["failed", "too_large", 1]);
    expect(jobs[ids.long]?.error?.message).toMatch(/duration|seconds/);
    for (const job of Object.values(jobs)) expect(job.outputs).toBeUndefined();
  }, 120_000);

  it("never writes a secret into a log line, a job record or Redis' files", async () => {
    const { cloud, dir } = fault.stack;
    await waitFor("the queue to drain", async () => (await fault.api.stats()).running === 0);
    const secretValues = (Object.keys(secretDeclarations) as SecretName[]).map((name) => [name, cloud.env[name]]);
    const { jobs } = await fault.api.listJobPage({ limit: 100 });
    expect(jobs.length).toBeGreaterThan(3);
    const redisDir = join(dir, "redis");
    const redisFiles = await readdir(redisDir, { recursive: true, withFileTypes: true });
    const redisText = (
      await Promise.all(redisFiles.filter((f) => f.isFile()).map((f) => readFile(join(f.parentPath, f.name), "latin1")))
    ).join("\n");
    expect(redisText).toContain(jobs[0]?.id);
    const places: [string, string][] = [
      ["worker log", fault.workerLines.join("\n")],
      ["machine logs", fault.machineLines.map((l) => l.raw).join("\n")],
      ["job records", JSON.stringify(jobs)],
      ["redis files", redisText],
    ];
    expect(fault.workerLines.length).toBeGreaterThan(10);
    expect(fault.machineLines.length).toBeGreaterThan(10);
    for (const [place, text] of places)
      for (const [name, value] of secretValues) {
        expect(value && value.length > 8).toBe(true);
        expect(text.includes(value as string), `${name} found in ${place}`).toBe(false);
      }
  });
});
