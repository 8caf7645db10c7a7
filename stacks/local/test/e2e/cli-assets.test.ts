/**
 * `tcoder transcode --url`, `--loudness`, `--captions` and `tcoder delete` against a running local
 * stack: the machine fetches the source from a web server and transcodes it; a loudness target and
 * captions files reach the job; deleting the job leaves a tombstone; wrong arguments are refused
 * before anything starts (exit 2) and API refusals exit 1.
 */
import { execFile } from "node:child_process";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Job } from "@tcoder/worker/contract";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LocalStack, repoRoot, startLocalStack } from "../../src/stack.ts";
import { makeClip } from "./clips.ts";

const tcoder = join(repoRoot, "stacks", "local", "bin", "tcoder.mjs");

describe("tcoder transcode --url, --loudness, --captions and tcoder delete", () => {
  let dir: string;
  let stack: LocalStack;
  let media: Server;
  let clipUrl: string;
  let clipPath: string;

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
    clipPath = await makeClip(join(dir, "beach.mp4"), { seconds: 8 });
    const clip = await readFile(clipPath);
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

  it("normalizes loudness to --loudness and adds --captions files to the finished job, copied by --out", async () => {
    const french = join(dir, "beach.fr.srt");
    await writeFile(
      french,
      "1\r\n00:00:01,000 --> 00:00:02,500\r\nBonjour\r\n\r\n2\r\n00:00:06,500 --> 00:00:07,000\r\nAu revoir\r\n",
    );
    const english = join(dir, "beach.en.vtt");
    await writeFile(english, "WEBVTT\n\n00:00:00.500 --> 00:00:01.500\nHello\n");
    const out = join(dir, "out");
    const run = await cli(
      ...["transcode", clipPath, "--loudness", "-16", "--json", "--out", out],
      ...["--captions", french, "--captions-language", "fr", "--captions", english, "--captions-language", "en-GB"],
    );
    expect(run.code, run.stderr).toBe(0);
    const job = JSON.parse(run.stdout) as Job;
    expect(job.state).toBe("completed");

    // The source's sine sits near -21 LUFS; every audio rendition now plays at -16.
    const loudness = job.outputs?.loudness;
    expect(loudness?.targetLufs).toBe(-16);
    expect(loudness?.renditions.length).toBeGreaterThan(0);
    for (const r of loudness?.renditions ?? []) {
      expect(Math.abs(r.output.integratedLufs + 16), r.name).toBeLessThanOrEqual(1);
      expect(Math.abs(r.input.integratedLufs + 16), r.name).toBeGreaterThan(3);
    }

    expect(job.outputs?.subtitles?.map((s) => [s.name, s.language, s.label])).toEqual([
      ["captions-fr", "fr", "French"],
      ["captions-en-gb", "en-GB", "British English"],
    ]);
    const master = await (await fetch(job.outputs?.hlsMaster?.url as string)).text();
    expect(master).toContain('TYPE=SUBTITLES,GROUP-ID="subs",NAME="French",LANGUAGE="fr"');
    expect(master).toContain('NAME="British English",LANGUAGE="en-GB"');
    // --out copies what manifest.json lists, the captions included.
    const copied = await readdir(join(out, job.id, "1", "subtitles"));
    expect(copied.sort()).toEqual(["captions-en-gb.vtt", "captions-fr.vtt"]);
    expect(await readFile(join(out, job.id, "1", "subtitles", "captions-fr.vtt"), "utf8")).toContain(
      "00:00:06.500 --> 00:00:07.000\nAu revoir",
    );
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
