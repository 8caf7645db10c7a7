/**
 * The README's first command, end to end: `tcoder up --demo --once` brings up the local cloud
 * (workerd, redis-server, the S3 store, the local Fly API running the machine-image program),
 * transcodes the generated 1080p sample through the public API with real ffmpeg, and exits 0.
 */
import { execFile } from "node:child_process";
import { mkdtemp, readdir, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import type { Job } from "@tcoder/worker/contract";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { repoRoot } from "../../src/stack.ts";
import { ffprobe, makeCorruptFile } from "./clips.ts";

const run = promisify(execFile);
const tcoder = join(repoRoot, "stacks", "local", "bin", "tcoder.mjs");

describe("tcoder up --demo --once", () => {
  let dir: string;
  let job: Job;
  let stderr: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "tcoder-cli-"));
    const result = await run(
      process.execPath,
      [tcoder, "up", "--demo", "--once", "--json", "--fresh", "--dir", join(dir, "state"), "--out", join(dir, "out")],
      { cwd: repoRoot, maxBuffer: 64 * 1024 * 1024, timeout: 600_000 },
    );
    job = JSON.parse(result.stdout) as Job;
    stderr = result.stderr;
  }, 600_000);

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("completes the sample job and prints only the job record on stdout", () => {
    expect(job.state).toBe("completed");
    expect(job.progress).toBe(1);
    expect(job.attempts).toBe(1);
    expect(job.probe?.video).toMatchObject({ width: 1920, height: 1080 });
    expect(stderr).toContain("tcoder is running locally");
  });

  it("publishes an HLS ladder whose every rendition ffprobe reads at its advertised size", async () => {
    const outputs = job.outputs;
    expect(outputs?.hlsMaster).toBeDefined();
    expect(outputs?.renditions.map((r) => r.height)).toEqual([1080, 720, 540, 360]);
    const packageDir = join(dir, "out", job.id);
    const master = await readFile(join(packageDir, relative(job, outputs?.hlsMaster?.key ?? "")), "utf8");
    expect(master).toMatch(/#EXT-X-STREAM-INF:.*BANDWIDTH=\d+.*RESOLUTION=1920x1080/);
    for (const rendition of outputs?.renditions ?? []) {
      const probe = await ffprobe(join(packageDir, relative(job, rendition.playlist.key)));
      const video = probe.streams.find((s) => s.codec_type === "video");
      expect(video).toMatchObject({ codec_name: "h264", width: rendition.width, height: rendition.height });
      expect(Number(probe.format.duration)).toBeGreaterThan(9.5);
    }
    // Audio is an alternate rendition the variants name (AUDIO=), not muxed into every rung.
    expect(master).toMatch(/#EXT-X-MEDIA:TYPE=AUDIO,.*DEFAULT=YES/);
    expect(outputs?.audio?.length).toBeGreaterThan(0);
    for (const audio of outputs?.audio ?? []) {
      const probe = await ffprobe(join(packageDir, relative(job, audio.playlist.key)));
      expect(probe.streams.map((s) => s.codec_type)).toEqual(["audio"]);
      expect(Number(probe.format.duration)).toBeGreaterThan(9.5);
    }
  });

  it("publishes a faststart MP4, a poster and thumbnails", async () => {
    const packageDir = join(dir, "out", job.id);
    const outputs = job.outputs;
    const mp4 = await ffprobe(join(packageDir, relative(job, outputs?.mp4?.key ?? "")));
    expect(Number(mp4.format.duration)).toBeCloseTo(10, 0);
    const mp4Bytes = await readFile(join(packageDir, relative(job, outputs?.mp4?.key ?? "")));
    // faststart: the moov box comes before mdat.
    expect(mp4Bytes.indexOf("moov")).toBeLessThan(mp4Bytes.indexOf("mdat"));
    const poster = await ffprobe(join(packageDir, relative(job, outputs?.poster?.key ?? "")));
    expect(poster.streams[0]?.codec_name).toBe("mjpeg");
    const vtt = await readFile(join(packageDir, relative(job, outputs?.thumbnailsVtt?.key ?? "")), "utf8");
    expect(vtt.startsWith("WEBVTT")).toBe(true);
    expect(vtt).toMatch(/#xywh=\d+,\d+,\d+,\d+/);
    expect((await stat(join(packageDir, relative(job, outputs?.thumbnailsSprite?.key ?? "")))).size).toBeGreaterThan(0);
  });

  it("leaves no stack behind", async () => {
    const state = await readdir(join(dir, "state"));
    expect(state).not.toContain("stack.json");
  });

  it("fails a corrupt upload with invalid_media and a non-zero exit", async () => {
    const corrupt = await makeCorruptFile(join(dir, "corrupt.mp4"));
    const failure = await run(process.execPath, [tcoder, "transcode", corrupt, "--json", "--dir", join(dir, "state")], {
      cwd: repoRoot,
      timeout: 300_000,
    }).then(
      () => null,
      (error: { code: number; stdout: string }) => error,
    );
    expect(failure?.code).toBe(1);
    const failed = JSON.parse(failure?.stdout ?? "{}") as Job;
    expect(failed.state).toBe("failed");
    expect(failed.error?.code).toBe("invalid_media");
  }, 300_000);
});

/** Path of an output key inside the copied package (`--out DIR/<jobId>/…`). */
function relative(job: Job, key: string): string {
  return key.slice(`outputs/${job.id}/`.length);
}
