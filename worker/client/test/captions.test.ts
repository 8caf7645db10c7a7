/**
 * Captions on a finished job through the SDK against the real local stack (workerd, redis-server,
 * the S3 store, a machine process running ffmpeg): SubRip and WebVTT files become subtitle
 * renditions cut on the package's own segment boundaries, the master playlist, the DASH manifest
 * and manifest.json are republished with them (and without them after a removal), and bad input is
 * refused with a stable code.
 */
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { type LocalStack, startLocalStack } from "@tcoder/local/stack";
import { type Manifest, subtitleSegmentName } from "@tcoder/worker/contract";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient, type Job, TcoderError } from "../src/node.ts";
import { makeClip } from "./media.ts";

let dir: string;
let stack: LocalStack;
let client: ReturnType<typeof createClient>;
/** A completed hls-small job of a 13 s clip: video segments of 6, 6 and 1 s. */
let job: Job;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "tcoder-captions-"));
  const clip = await makeClip(join(dir, "talk.mp4"), { seconds: 13, size: "320x180" });
  stack = await startLocalStack({
    dir: join(dir, "stack"),
    maxMachines: 1,
    cronIntervalMs: 500,
    vars: { DEFAULT_PRESET: "hls-small" },
    machineEnv: { X264_PRESET: "ultrafast", POLL_MIN_MS: "200", POLL_MAX_MS: "1000" },
  });
  client = createClient({ baseUrl: stack.cloud.apiUrl, token: stack.cloud.apiToken });
  const uploaded = await client.upload(clip);
  job = await client.waitForJob(uploaded.id, { timeout: 150_000 });
  expect(job.state).toBe("completed");
}, 200_000);

afterAll(async () => {
  await stack?.stop();
  await rm(dir, { recursive: true, force: true });
});

const text = async (url: string) => {
  const res = await fetch(url);
  expect(res.status, url).toBe(200);
  return res.text();
};
const mediaLines = (master: string) => master.split("\n").filter((l) => l.startsWith("#EXT-X-MEDIA:TYPE=SUBTITLES"));
const variantLines = (master: string) => master.split("\n").filter((l) => l.startsWith("#EXT-X-STREAM-INF:"));
const segmentDurations = (playlist: string) =>
  playlist
    .split("\n")
    .filter((l) => l.startsWith("#EXTINF:"))
    .map((l) => Number.parseFloat(l.slice("#EXTINF:".length)));

const subrip = [
  "1\r\n00:00:01,000 --> 00:00:02,500\r\nBonjour\r\n",
  "2\r\n00:00:05,500 --> 00:00:06,500\r\nÀ cheval sur la limite\r\n",
  "3\r\n00:00:12,200 --> 00:00:12,800\r\n<i>Fin</i>\r\n",
].join("\r\n");

const webvtt =
  "WEBVTT\n\nintro\n00:00:00.500 --> 00:00:01.500 align:start\nHello\n\n00:00:07.000 --> 00:00:08.000\nAgain\n";

/** The text adaptation sets of an MPD: [lang, label, BaseURL] each. */
const dashTextSets = (mpd: string) =>
  [...mpd.matchAll(/<AdaptationSet [^>]*contentType="text"[^>]*>[\s\S]*?<\/AdaptationSet>/g)].map((m) => [
    /lang="([^"]*)"/.exec(m[0])?.[1],
    /<Label>([^<]*)<\/Label>/.exec(m[0])?.[1],
    /<BaseURL>([^<]*)<\/BaseURL>/.exec(m[0])?.[1],
  ]);
const manifestOf = async (job: Job) => JSON.parse(await text(job.outputs?.manifest.url as string)) as Manifest;

const problemOf = async (promise: Promise<unknown>) => {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(TcoderError);
  return error as TcoderError;
};

describe("captions on a finished job", () => {
  it("adds SubRip and WebVTT captions as subtitle renditions on the video's segment boundaries and republishes the master", async () => {
    const master = job.outputs?.hlsMaster?.url as string;
    const videoPlaylist = await text(job.outputs?.renditions[0]?.playlist.url as string);
    expect(segmentDurations(videoPlaylist).length).toBe(3);
    const original = await text(master);
    expect(mediaLines(original)).toEqual([]);

    const withFrench = await client.addCaptions(job.id, { language: "fr", text: subrip });
    const withBoth = await client.addCaptions(job.id, { language: "en", text: webvtt, name: "English (CC)" });
    expect(withFrench.outputs?.subtitles?.map((s) => s.name)).toEqual(["captions-fr"]);
    expect(withBoth.outputs?.subtitles?.map((s) => [s.name, s.label, s.language, s.default])).toEqual([
      ["captions-fr", "French", "fr", false],
      ["captions-en", "English (CC)", "en", false],
    ]);
    expect((await client.getJob(job.id)).outputs?.subtitles).toEqual(withBoth.outputs?.subtitles);

    const republished = await text(master);
    expect(mediaLines(republished)).toEqual([
      '#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",NAME="French",LANGUAGE="fr",DEFAULT=NO,AUTOSELECT=YES,FORCED=NO,URI="captions-fr/playlist.m3u8"',
      '#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",NAME="English (CC)",LANGUAGE="en",DEFAULT=NO,AUTOSELECT=YES,FORCED=NO,URI="captions-en/playlist.m3u8"',
    ]);
    // Everything the machine wrote is still there; every variant now offers the subtitles group.
    expect(republished.split("\n").filter((l) => !l.startsWith("#EXT-X-MEDIA:TYPE=SUBTITLES"))).toEqual(
      original.split("\n").map((l) => (l.startsWith("#EXT-X-STREAM-INF:") ? `${l},SUBTITLES="subs"` : l)),
    );
    for (const variant of variantLines(republished)) expect(variant).toMatch(/,AUDIO="stereo",SUBTITLES="subs"$/);

    const french = withBoth.outputs?.subtitles?.[0];
    const frenchPlaylist = await text(french?.playlist.url as string);
    expect(segmentDurations(frenchPlaylist)).toEqual(segmentDurations(videoPlaylist));
    const base = String(french?.playlist.url).replace(/playlist\.m3u8$/, "");
    const segments = await Promise.all(["seg_00000.vtt", "seg_00001.vtt", "seg_00002.vtt"].map((s) => text(base + s)));
    // The cue across the 6 s boundary is in both segments, at its source time; SubRip commas became WebVTT dots.
    expect(segments[0]).toContain("00:00:01.000 --> 00:00:02.500\nBonjour");
    expect(segments[0]).toContain("00:00:05.500 --> 00:00:06.500\nÀ cheval sur la limite");
    expect(segments[1]).toContain("00:00:05.500 --> 00:00:06.500\nÀ cheval sur la limite");
    expect(segments[2]).toContain("00:00:12.200 --> 00:00:12.800\n<i>Fin</i>");
    expect(await text(french?.vtt.url as string)).toMatch(/^WEBVTT\n\n00:00:01.000 --> 00:00:02.500\nBonjour/);

    // What the master points players at is what the job lists.
    const uris = mediaLines(republished).map((l) => new URL(/URI="([^"]+)"/.exec(l)?.[1] as string, master).href);
    expect(uris).toEqual(withBoth.outputs?.subtitles?.map((s) => s.playlist.url));
  });

  it("lists the captions in the DASH manifest and in manifest.json, with every file they added", async () => {
    const current = await client.getJob(job.id);
    const subtitles = current.outputs?.subtitles ?? [];
    const mpdUrl = current.outputs?.dashManifest?.url as string;
    const mpd = await text(mpdUrl);
    expect(dashTextSets(mpd)).toEqual([
      ["fr", "French", "subtitles/captions-fr.vtt"],
      ["en", "English (CC)", "subtitles/captions-en.vtt"],
    ]);
    // Relative to the MPD, each names the whole WebVTT file the job lists.
    expect(dashTextSets(mpd).map(([, , uri]) => new URL(uri as string, mpdUrl).href)).toEqual(
      subtitles.map((s) => s.vtt.url),
    );
    // The MPD still describes the machine's media, and ffmpeg still plays its video and audio from it.
    const { stderr } = await promisify(execFile)("ffmpeg", [
      ...["-hide_banner", "-v", "error", "-i", mpdUrl, "-map", "0:v", "-map", "0:a", "-f", "null", "-"],
    ]);
    expect(stderr).toBe("");

    const manifest = await manifestOf(current);
    expect(manifest.hls?.subtitles.map((s) => [s.name, s.label, s.language, s.cues, s.segments])).toEqual([
      ["captions-fr", "French", "fr", 3, 3],
      ["captions-en", "English (CC)", "en", 2, 3],
    ]);
    const listed = new Map(manifest.files.map((f) => [f.key, f]));
    const manifestRef = current.outputs?.manifest as { url: string; key: string };
    const urlOf = (key: string) => manifestRef.url.slice(0, -manifestRef.key.length) + key;
    for (const s of subtitles) {
      const segments = segmentDurations(await text(s.playlist.url)).map((_, i) =>
        s.playlist.key.replace("playlist.m3u8", subtitleSegmentName(i)),
      );
      for (const key of [s.playlist.key, s.vtt.key, ...segments]) {
        const bytes = (await (await fetch(urlOf(key))).arrayBuffer()).byteLength;
        expect(listed.get(key), key).toMatchObject({ sizeBytes: bytes });
      }
    }
    // Each file once, and nothing listed that is not there.
    expect(listed.size).toBe(manifest.files.length);
  });

  it("replaces a language's captions when they are posted again", async () => {
    const replaced = await client.addCaptions(job.id, {
      language: "fr",
      text: "WEBVTT\n\n00:00:03.000 --> 00:00:04.000\nNouveau\n",
    });
    expect(replaced.outputs?.subtitles?.map((s) => s.name)).toEqual(["captions-en", "captions-fr"]);
    const french = replaced.outputs?.subtitles?.find((s) => s.name === "captions-fr");
    expect(await text(french?.vtt.url as string)).toBe("WEBVTT\n\n00:00:03.000 --> 00:00:04.000\nNouveau\n");
    expect(mediaLines(await text(job.outputs?.hlsMaster?.url as string)).length).toBe(2);
  });

  it("removes captions: the master no longer lists them and their files are gone", async () => {
    const before = (await client.getJob(job.id)).outputs?.subtitles?.find((s) => s.name === "captions-en");
    const after = await client.removeCaptions(job.id, "en");
    expect(after.outputs?.subtitles?.map((s) => s.name)).toEqual(["captions-fr"]);
    const master = await text(job.outputs?.hlsMaster?.url as string);
    expect(mediaLines(master).map((l) => /LANGUAGE="(\w+)"/.exec(l)?.[1])).toEqual(["fr"]);
    for (const url of [
      before?.playlist.url,
      before?.vtt.url,
      before?.playlist.url.replace("playlist.m3u8", "seg_00000.vtt"),
    ])
      expect((await fetch(url as string)).status, url).toBe(404);

    const afterManifest = await manifestOf(after);
    expect(afterManifest.hls?.subtitles.map((s) => s.name)).toEqual(["captions-fr"]);
    expect(afterManifest.files.filter((f) => f.key.includes("captions-en"))).toEqual([]);
    expect(dashTextSets(await text(after.outputs?.dashManifest?.url as string)).map(([lang]) => lang)).toEqual(["fr"]);

    const none = await client.removeCaptions(job.id, "fr");
    const bare = await text(job.outputs?.hlsMaster?.url as string);
    expect(mediaLines(bare)).toEqual([]);
    for (const variant of variantLines(bare)) expect(variant).not.toContain("SUBTITLES=");
    expect(await text(none.outputs?.dashManifest?.url as string)).not.toContain('contentType="text"');
    const bareManifest = await manifestOf(none);
    expect(bareManifest.hls?.subtitles).toEqual([]);
    expect(bareManifest.files.filter((f) => f.key.includes("captions-"))).toEqual([]);
  });

  it("refuses what is not captions, too large a file, a bad language, a missing language and an unfinished job", async () => {
    const code = async (promise: Promise<unknown>) => (await problemOf(promise)).code;
    expect(await code(client.addCaptions(job.id, { language: "fr", text: "just some words\nno cues here\n" }))).toBe(
      "invalid_captions",
    );
    expect(await code(client.addCaptions(job.id, { language: "fr", text: "WEBVTT\n\nno timings at all\n" }))).toBe(
      "invalid_captions",
    );
    const huge = `WEBVTT\n\n${"00:00:01.000 --> 00:00:02.000\nline\n\n".repeat(40_000)}`;
    expect(await code(client.addCaptions(job.id, { language: "fr", text: huge }))).toBe("captions_too_large");
    expect(await code(client.addCaptions(job.id, { language: "not a language", text: webvtt }))).toBe(
      "invalid_request",
    );
    expect(await code(client.removeCaptions(job.id, "de"))).toBe("captions_not_found");
    expect(await code(client.addCaptions("job_00000000000000000000000000", { language: "fr", text: webvtt }))).toBe(
      "job_not_found",
    );

    const reserved = await fetch(`${stack.cloud.apiUrl}/v1/uploads`, {
      method: "POST",
      headers: { authorization: `Bearer ${stack.cloud.apiToken}`, "content-type": "application/json" },
      body: JSON.stringify({ filename: "later.mp4", contentType: "video/mp4", size: 10 }),
    });
    const waiting = ((await reserved.json()) as { jobId: string }).jobId;
    expect(await code(client.addCaptions(waiting, { language: "fr", text: webvtt }))).toBe("invalid_state");
    // None of it touched the finished package.
    expect(mediaLines(await text(job.outputs?.hlsMaster?.url as string))).toEqual([]);
  });
});
