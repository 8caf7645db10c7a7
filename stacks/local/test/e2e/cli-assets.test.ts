/**
 * `tcoder transcode --url` and `tcoder delete` against a running local stack: the machine fetches
 * the source from a web server and transcodes it; deleting the job leaves a tombstone; wrong
 * arguments are refused before anything starts (exit 2) and API refusals exit 1.
 */
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Job } from "@tcoder/worker/contract";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LocalStack, repoRoot, startLocalStack } from "../../src/stack.ts";
import { makeClip } from "./clips.ts";

const tcoder = join(repoRoot, "stacks", "local", "bin", "tcoder.mjs");

describe("tcoder transcode --url and tcoder delete", () => {
  let dir: string;
  let stack: LocalStack;
  let media: Server;
  let clipUrl: string;

  const cli = (...args: string[]) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(
        process.execPath,
        [tcoder, ...args, "--dir", join(dir, "state")],
        { cwd: repoRoot, timeout: 150_000, maxBuffer: 16 * 1024 * 1024 },
        (error, stdout, stderr) =>
          resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
    });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "tcoder-cli-assets-"));
    const clip = await readFile(await makeClip(join(dir, "beach.mp4")));
    media = createServer((req, res) => {
      if (req.url === "/videos/beach.mp4")
        return void res.writeHead(200, { "content-type": "video/mp4", "content-length": clip.length }).end(clip);
      res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => media.listen(0, "127.0.0.1", resolve));
    clipUrl = `http://127.0.0.1:${(media.address() as AddressInfo).port}/videos/beach.mp4`;
    stack = await startLocalStack({
      dir: join(dir, "state"),
      maxMachines: 1,
      cronIntervalMs: 1_000,
      vars: { DEFAULT_PRESET: "hls-small" },
      machineEnv: { X264_PRESET: "ultrafast" },
    });
  }, 120_000);

  afterAll(async () => {
    await stack?.stop();
    media?.closeAllConnections();
    await new Promise((resolve) => (media ? media.close(resolve) : resolve(undefined)));
    await rm(dir, { recursive: true, force: true });
  });

  it("transcodes a source the machine fetches from a URL, then deletes the job", async () => {
    const transcoded = await cli("transcode", "--url", clipUrl, "--json");
    expect(transcoded.code).toBe(0);
    const job = JSON.parse(transcoded.stdout) as Job;
    expect(job).toMatchObject({ state: "completed", input: { url: clipUrl, filename: "beach.mp4" } });

    expect(await cli("delete", job.id)).toMatchObject({ code: 0, stdout: `${job.id}: deleted\n` });
    const status = await cli("status", job.id);
    expect(JSON.parse(status.stdout)).toMatchObject({ id: job.id, state: "deleted" });
    expect((await cli("delete", job.id)).code).toBe(0);
  }, 180_000);

  it("refuses a missing job id or a URL that is not http(s) before anything starts, and an unknown job with exit 1", async () => {
    const missing = await cli("delete");
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("delete needs a job id");
    const ftp = await cli("transcode", "--url", "ftp://media.example.com/a.mp4");
    expect(ftp.code).toBe(2);
    expect(ftp.stderr).toContain('--url "ftp://media.example.com/a.mp4" must be an http:// or https:// address');
    const unknown = await cli("delete", "job_doesnotexist");
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain("job_not_found");
  });
});
