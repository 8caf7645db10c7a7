/**
 * Chunked parallel encoding on the local stack: a source longer than CHUNK_SECONDS is encoded as
 * tasks on two machines. Its package decodes without errors, each rendition's segments follow one
 * another without gap or overlap (within a frame), the duration is the source's, audio and video
 * end together, and the renditions and bitrates are those of the same source encoded in one piece,
 * also when a chunk's machine is killed mid-run and the chunks finish out of order.
 */
import { execFile } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { ListObjectsV2Command } from "@aws-sdk/client-s3";
import { isTerminal, type Job, parseMediaPlaylist } from "@tcoder/worker/contract";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FaultStack, startFaultStack, submitClip, waitFor, waitForTerminal } from "../reliability/harness.ts";
import { makeClip } from "./clips.ts";

const run = promisify(execFile);
const FPS = 30000 / 1001;
const FRAME = 1 / FPS;
const SOURCE_SECONDS = 26;

interface SegmentSpan {
  uri: string;
  start: number;
  end: number;
}

/** Every segment of a media playlist, decoded with its init segment: where its frames start and end. */
async function segmentSpans(playlistUrl: string, dir: string): Promise<SegmentSpan[]> {
  const text = await (await fetch(playlistUrl)).text();
  const playlist = parseMediaPlaylist(text);
  const base = new URL(".", playlistUrl);
  const maps = [...text.matchAll(/#EXT-X-MAP:URI="([^"]+)"/g)].map((m) => m[1] as string);
  const init = Buffer.from(await (await fetch(new URL(maps[0] as string, base))).arrayBuffer());
  const spans: SegmentSpan[] = [];
  for (const [i, segment] of playlist.segments.entries()) {
    const bytes = Buffer.from(await (await fetch(new URL(segment.uri, base))).arrayBuffer());
    const path = join(dir, `segment-${i}.mp4`);
    await writeFile(path, Buffer.concat([init, bytes]));
    const { stdout } = await run("ffprobe", [
      ...["-v", "error", "-select_streams", "v:0", "-show_entries", "packet=pts_time", "-of", "csv=p=0", path],
    ]);
    const pts = stdout
      .split("\n")
      .filter(Boolean)
      .map((line) => Number.parseFloat(line));
    spans.push({ uri: segment.uri, start: Math.min(...pts), end: Math.max(...pts) + FRAME });
  }
  return spans;
}

async function streamDurations(url: string) {
  const { stdout } = await run("ffprobe", [
    ...["-v", "error", "-show_entries", "stream=codec_type,duration:format=duration", "-of", "json", url],
  ]);
  const probe = JSON.parse(stdout) as {
    streams: { codec_type: string; duration: string }[];
    format: { duration: string };
  };
  const of = (type: string) => Number(probe.streams.find((s) => s.codec_type === type)?.duration);
  return { video: of("video"), audio: of("audio"), format: Number(probe.format.duration) };
}

const decodeErrors = async (url: string) =>
  (await run("ffmpeg", ["-v", "error", "-i", url, "-f", "null", "-"], { maxBuffer: 16 * 1024 * 1024 })).stderr;

describe("a long source encoded in chunks on two machines", () => {
  let chunked: FaultStack;
  let single: FaultStack;
  let clip: string;
  let reference: Job;

  beforeAll(async () => {
    // One lease lasts a few seconds, so a killed chunk's machine is noticed quickly.
    [chunked, single] = await Promise.all([
      startFaultStack("chunked", {
        maxMachines: 2,
        vars: { CHUNK_SECONDS: "6", JOB_LEASE_SECONDS: "5", DEFAULT_PRESET: "hls-small" },
      }),
      startFaultStack("chunked-reference", {
        maxMachines: 1,
        vars: { CHUNK_SECONDS: "0", DEFAULT_PRESET: "hls-small" },
      }),
    ]);
    clip = await makeClip(join(chunked.dir, "long.mp4"), {
      seconds: SOURCE_SECONDS,
      size: "640x360",
      rate: "30000/1001",
    });
    const referenceId = await submitClip(single, clip, { preset: "hls-small" });
    [reference] = (await waitForTerminal(single.api, [referenceId], 240_000)) as [Job];
    expect(reference.state).toBe("completed");
    expect(reference.tasks).toBeUndefined();
  }, 600_000);

  afterAll(async () => {
    await Promise.all([chunked?.stop(), single?.stop()]);
  });

  async function expectSameAsReference(job: Job, name: string) {
    const dir = join(chunked.dir, name);
    await mkdir(dir, { recursive: true });
    expect(job.state).toBe("completed");
    expect(job.tasks).toMatchObject({ done: job.tasks?.total });
    expect(job.playable).toBe(true);
    const outputs = job.outputs as NonNullable<Job["outputs"]>;
    const expected = reference.outputs as NonNullable<Job["outputs"]>;

    // The same renditions, at bitrates within a few percent of the single-task encode.
    expect(outputs.renditions.map((r) => [r.name, r.width, r.height])).toEqual(
      expected.renditions.map((r) => [r.name, r.width, r.height]),
    );
    for (const [i, r] of outputs.renditions.entries()) {
      const ratio = r.bandwidth / (expected.renditions[i]?.bandwidth ?? 1);
      expect(ratio, `${r.name} bandwidth ${r.bandwidth} vs ${expected.renditions[i]?.bandwidth}`).toBeGreaterThan(0.8);
      expect(ratio).toBeLessThan(1.25);
    }
    expect(outputs.audio?.map((a) => a.name)).toEqual(expected.audio?.map((a) => a.name));

    // Decodes with no errors: the master (every variant) and the MP4.
    expect(await decodeErrors(outputs.hlsMaster?.url as string)).toBe("");
    expect(await decodeErrors(outputs.mp4?.url as string)).toBe("");

    // Each rendition's segments follow one another within a frame, from 0 to the source's end.
    for (const rendition of outputs.renditions) {
      const spans = await segmentSpans(rendition.playlist.url, dir);
      expect(spans[0]?.start ?? 1).toBeLessThan(FRAME);
      for (let i = 1; i < spans.length; i++) {
        const gap = (spans[i]?.start ?? 0) - (spans[i - 1]?.end ?? 0);
        expect(Math.abs(gap), `${rendition.name} ${spans[i - 1]?.uri} → ${spans[i]?.uri}`).toBeLessThan(FRAME / 2);
      }
      expect(Math.abs((spans.at(-1)?.end ?? 0) - SOURCE_SECONDS)).toBeLessThan(0.1);
    }

    // The MP4: the source's duration, audio and video ending together.
    const mp4 = await streamDurations(outputs.mp4?.url as string);
    expect(Math.abs(mp4.format - SOURCE_SECONDS)).toBeLessThan(0.1);
    expect(Math.abs(mp4.video - mp4.audio)).toBeLessThan(FRAME);
    const referenceMp4 = await streamDurations(expected.mp4?.url as string);
    expect(Math.abs(mp4.video - referenceMp4.video)).toBeLessThan(FRAME);
  }

  it("splits the job into tasks that both machines work on, and stitches a package like the single-task one", async () => {
    const jobId = await submitClip(chunked, clip, { preset: "hls-small" });
    // While it runs, the job lists its tasks by state and becomes playable before it completes.
    const early = await waitFor(
      "the job to become playable",
      async () => {
        const job = await chunked.api.getJob(jobId);
        return job.playable || isTerminal(job.state) ? job : undefined;
      },
      { timeoutMs: 180_000, everyMs: 100 },
    );
    expect(early.state, "playable before completed").toBe("running");
    expect(early.live?.hlsMaster.url).toMatch(/live\.m3u8$/);
    // What a player reloading the live playlist saw while the job ran.
    const liveMaster = early.live?.hlsMaster.url as string;
    const variant = (await (await fetch(liveMaster)).text()).split("\n").find((line) => line.endsWith("live.m3u8"));
    const liveMedia = new URL(variant as string, liveMaster).href;
    const seen: string[] = [];
    for (;;) {
      const job = await chunked.api.getJob(jobId);
      if (job.state !== "running") break;
      seen.push(await (await fetch(liveMedia)).text());
      await new Promise((resolve) => setTimeout(resolve, 150));
    }
    const [job] = (await waitForTerminal(chunked.api, [jobId], 240_000)) as [Job];
    // audio, v0..v4, stills and finalize
    expect(job.tasks?.total).toBe(8);
    const machines = new Set(job.usage?.attempts.filter((a) => a.task?.startsWith("v")).map((a) => a.machineId));
    expect(machines.size, "both machines encoded chunks").toBe(2);
    await expectSameAsReference(job, "clean");

    // The live playlist only ever grew, in order, as an EVENT playlist; once complete it ends
    // (VOD with an end tag) and lists every segment.
    const final = await (await fetch(liveMedia)).text();
    expect(final).toContain("#EXT-X-PLAYLIST-TYPE:VOD");
    expect(final).toContain("#EXT-X-ENDLIST");
    const all = parseMediaPlaylist(final).segments.map((segment) => segment.uri);
    expect(all.length).toBe(5);
    let listed = 0;
    for (const text of seen) {
      expect(text).toContain("#EXT-X-PLAYLIST-TYPE:EVENT");
      expect(text).not.toContain("#EXT-X-ENDLIST");
      const uris = parseMediaPlaylist(text).segments.map((segment) => segment.uri);
      expect(uris, "a prefix of the final list").toEqual(all.slice(0, uris.length));
      expect(uris.length).toBeGreaterThanOrEqual(listed);
      listed = uris.length;
    }
    expect(parseMediaPlaylist(seen[0] ?? final).segments.length, "watchable before every chunk was done").toBeLessThan(
      all.length,
    );
  }, 600_000);

  it("deleting a chunked job while its tasks run stops them and leaves no object under its prefixes", async () => {
    const jobId = await submitClip(chunked, clip, { preset: "hls-small" });
    await waitFor(
      "chunks to be uploaded and tasks running",
      async () => {
        const job = await chunked.api.getJob(jobId);
        return job.playable && (job.tasks?.running ?? 0) > 0 ? job : undefined;
      },
      { timeoutMs: 180_000, everyMs: 50 },
    );
    await chunked.api.deleteJob(jobId);
    // The purge settles only once the last task's lease has run out: nothing can be written after it.
    const purged = await waitFor(
      "the purge to settle",
      async () => {
        const job = await chunked.api.getJob(jobId);
        return job.purgedAt ? job : undefined;
      },
      { timeoutMs: 120_000, everyMs: 250 },
    );
    expect(purged).toMatchObject({ state: "deleted", playable: false });
    const { s3, settings } = chunked.stack.cloud;
    const left = await Promise.all(
      [
        [settings.INPUT_BUCKET, `inputs/${jobId}/`],
        [settings.OUTPUT_BUCKET, `outputs/${jobId}/`],
      ].map(([Bucket, Prefix]) => s3.send(new ListObjectsV2Command({ Bucket, Prefix }))),
    );
    expect(left.flatMap((page) => (page.Contents ?? []).map((object) => object.Key))).toEqual([]);
    // No machine works on it any more, and nothing of it is queued.
    await waitFor("its tasks' machines to let go", async () => (await chunked.api.stats()).queued === 0);
  }, 600_000);

  it("retries a chunk whose machine was killed, alone, and still stitches the same package", async () => {
    const jobId = await submitClip(chunked, clip, { preset: "hls-small" });
    const victim = await waitFor(
      "a video chunk to be encoding",
      async () => {
        const machines = chunked.stack.cloud.fly.machines(chunked.stack.cloud.settings.FLY_APP_NAME);
        for (const machine of machines) {
          const busyWith = await chunked.stack.cloud.redis.hget<string>(`tcoder:machine:${machine.id}`, "jobId");
          if (busyWith?.startsWith(`${jobId}/v1`)) return machine.id;
        }
        return undefined;
      },
      { timeoutMs: 120_000, everyMs: 50 },
    );
    expect(await chunked.stack.killMachine(victim)).toBe(true);
    const [job] = (await waitForTerminal(chunked.api, [jobId], 300_000)) as [Job];
    const v1 = job.usage?.attempts.filter((a) => a.task === "v1") ?? [];
    expect(v1.map((a) => a.outcome)).toEqual(["lease_expired", "task_completed"]);
    // Every other task ran once.
    const others = job.usage?.attempts.filter((a) => a.task && a.task !== "v1") ?? [];
    expect(new Set(others.map((a) => a.task)).size).toBe(others.length);
    await expectSameAsReference(job, "killed");
  }, 600_000);
});
