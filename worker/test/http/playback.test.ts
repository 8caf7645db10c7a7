/**
 * Signed playback against real Redis and the S3 store: a job created with `playback: "signed"`
 * publishes to the bucket without public access, its record points at the worker, and the worker
 * serves the package only with a valid, unexpired token for that job, rewriting playlists so every
 * URI carries the token and passing Range through.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Job, MachineEvent } from "../../src/contract/index.ts";
import {
  SIGNATURE_HEADER,
  signPayload,
  signPlaybackToken,
  signPlaybackUrl,
  verifyPlaybackToken,
} from "../../src/contract/index.ts";
import { claimNextJob } from "../../src/state/index.ts";
import { presignPut } from "../../src/storage/s3.ts";
import {
  type ControlPlaneServices,
  MACHINE_EVENTS_SECRET,
  OUTPUTS_BASE_URL,
  PLAYBACK_SIGNING_SECRET,
  startControlPlaneServices,
} from "./harness.ts";

let cp: ControlPlaneServices;
beforeAll(async () => {
  cp = await startControlPlaneServices({ MAX_MACHINES: "1" });
});
afterAll(() => cp?.stop());

const CONTROL_PLANE = "http://127.0.0.1:8787";
const segment = new TextEncoder().encode("0123456789abcdefghij");

async function put(bucket: string, key: string, body: Uint8Array | string, contentType: string) {
  const bytes = typeof body === "string" ? new TextEncoder().encode(body) : body;
  const signed = await presignPut(cp.env, {
    bucket,
    key,
    contentType,
    sizeBytes: bytes.byteLength,
    expiresInSeconds: 600,
    nowMs: Date.now(),
  });
  const res = await fetch(signed.url, { method: "PUT", headers: signed.headers, body: bytes });
  if (res.status !== 200) throw new Error(`PUT ${key}: ${res.status}`);
}

async function sendEvent(event: MachineEvent) {
  const body = JSON.stringify(event);
  await cp.request("/v1/machine-events", {
    method: "POST",
    token: null,
    headers: { "content-type": "application/json", [SIGNATURE_HEADER]: await signPayload(MACHINE_EVENTS_SECRET, body) },
    body,
  });
}

/** A completed job whose (small, hand-made) HLS package sits where its playback policy puts it. */
async function completedJob(playback: "public" | "signed"): Promise<Job> {
  const up = (await (
    await cp.request("/v1/uploads", { method: "POST", json: { filename: "a.mp4", contentType: "video/mp4", size: 4 } })
  ).json()) as { upload: { url: string; headers: Record<string, string> }; job: Job };
  await fetch(up.upload.url, { method: "PUT", headers: up.upload.headers, body: "abcd" });
  const created = (await (
    await cp.request("/v1/jobs", { method: "POST", json: { inputKey: up.job.input.key, playback } })
  ).json()) as Job;
  expect(created.playback).toBe(playback);
  let claim = await claimNextJob(cp.redis, { machineId: "m-play", leaseSeconds: 60 });
  while (claim && claim.jobId !== created.id)
    claim = await claimNextJob(cp.redis, { machineId: "m-play", leaseSeconds: 60 });
  if (!claim) throw new Error("the job was not claimable");
  expect(claim.playback).toBe(playback);

  const bucket = playback === "signed" ? cp.env.INPUT_BUCKET : cp.env.OUTPUT_BUCKET;
  const base = `outputs/${created.id}/1`;
  await put(
    bucket,
    `${base}/hls/master.m3u8`,
    "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=900000\n360p/playlist.m3u8\n",
    "application/vnd.apple.mpegurl",
  );
  await put(
    bucket,
    `${base}/hls/360p/playlist.m3u8`,
    '#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-MAP:URI="init.mp4"\n#EXTINF:2.0,\nseg_00000.m4s\n#EXT-X-ENDLIST\n',
    "application/vnd.apple.mpegurl",
  );
  await put(bucket, `${base}/hls/360p/init.mp4`, segment, "video/mp4");
  await put(bucket, `${base}/hls/360p/seg_00000.m4s`, segment, "video/iso.segment");
  await put(
    bucket,
    `${base}/thumbnails/thumbnails.vtt`,
    "WEBVTT\n\n00:00:00.000 --> 00:00:02.000\nsprite.jpg#xywh=0,0,160,90\n",
    "text/vtt",
  );
  await sendEvent({
    type: "completed",
    jobId: created.id,
    machineId: "m-play",
    attempt: claim.attempt,
    outputs: {
      manifest: `outputs/${created.id}/manifest.json`,
      hlsMaster: `${base}/hls/master.m3u8`,
      renditions: [
        { name: "360p", width: 640, height: 360, bandwidth: 900000, playlist: `${base}/hls/360p/playlist.m3u8` },
      ],
      thumbnailsVtt: `${base}/thumbnails/thumbnails.vtt`,
    },
    probe: { formatName: "mov,mp4", durationSeconds: 2, sizeBytes: 4 },
  });
  return (await (await cp.request(`/v1/jobs/${created.id}`)).json()) as Job;
}

/** A player's request: no bearer token, only the URL. */
const play = (url: string, init: RequestInit = {}) => cp.request(url, { ...init, token: null });
const mintToken = async (jobId: string, expiresInSeconds = 600) =>
  (await (
    await cp.request(`/v1/jobs/${jobId}/playback-tokens`, { method: "POST", json: { expiresInSeconds } })
  ).json()) as {
    url: string;
    token: string;
    expiresAt: string;
  };

describe("signed playback", () => {
  let job: Job;
  beforeAll(async () => {
    job = await completedJob("signed");
  });

  it("records worker URLs for a signed job's outputs, which answer 403 without a token", async () => {
    expect(job.state).toBe("completed");
    expect(job.outputs?.hlsMaster?.url).toBe(`${CONTROL_PLANE}/v1/playback/${job.id}/1/hls/master.m3u8`);
    const res = await play(job.outputs?.hlsMaster?.url as string);
    expect(res.status).toBe(403);
    const body = (await res.json()) as { code: string };
    expect(body.code).toBe("invalid_playback_token");
    expect(JSON.stringify(body)).not.toContain("360p");
  });

  it("mints a URL whose playlists carry the same token on every URI, down to the segments", async () => {
    const minted = await mintToken(job.id, 900);
    expect(minted.url).toBe(`${job.outputs?.hlsMaster?.url}?token=${minted.token}`);
    expect(Date.parse(minted.expiresAt) - Date.now()).toBeGreaterThan(890_000);

    const master = await play(minted.url);
    expect(master.status).toBe(200);
    expect(master.headers.get("content-type")).toBe("application/vnd.apple.mpegurl");
    expect(master.headers.get("cache-control")).toMatch(/^private, max-age=\d+$/);
    expect(master.headers.get("access-control-allow-origin")).toBe("*");
    const masterText = await master.text();
    expect(masterText).toContain(`\n360p/playlist.m3u8?token=${minted.token}\n`);

    const media = await play(new URL(`360p/playlist.m3u8?token=${minted.token}`, minted.url).toString());
    const mediaText = await media.text();
    expect(mediaText).toContain(`#EXT-X-MAP:URI="init.mp4?token=${minted.token}"`);
    expect(mediaText).toContain(`\nseg_00000.m4s?token=${minted.token}\n`);
    expect(Number(media.headers.get("content-length"))).toBe(new TextEncoder().encode(mediaText).byteLength);

    const seg = await play(new URL(`360p/seg_00000.m4s?token=${minted.token}`, minted.url).toString());
    expect(seg.status).toBe(200);
    expect(new Uint8Array(await seg.arrayBuffer())).toEqual(segment);

    const vtt = await play(`${job.outputs?.thumbnailsVtt?.url}?token=${minted.token}`);
    expect(await vtt.text()).toContain(`sprite.jpg?token=${minted.token}#xywh=0,0,160,90`);
  });

  it("answers Range requests with 206 and HEAD with the length and no body", async () => {
    const { token } = await mintToken(job.id);
    const url = `${CONTROL_PLANE}/v1/playback/${job.id}/1/hls/360p/seg_00000.m4s?token=${token}`;
    const ranged = await play(url, { headers: { range: "bytes=2-5" } });
    expect(ranged.status).toBe(206);
    expect(ranged.headers.get("content-range")).toBe(`bytes 2-5/${segment.length}`);
    expect(await ranged.text()).toBe("2345");
    const head = await play(url, { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(head.headers.get("content-length")).toBe(String(segment.length));
    expect(await head.text()).toBe("");
  });

  it("refuses tampered, expired, other jobs' and malformed tokens with 403 and serves nothing", async () => {
    const { token } = await mintToken(job.id);
    const other = await completedJob("signed");
    const url = (t: string) =>
      `${CONTROL_PLANE}/v1/playback/${job.id}/1/hls/360p/seg_00000.m4s?token=${encodeURIComponent(t)}`;
    const [exp, mac] = token.split(".") as [string, string];
    const flipped = `${mac.slice(0, 10)}${mac[10] === "A" ? "B" : "A"}${mac.slice(11)}`;
    const nowSeconds = Math.floor(Date.now() / 1000);
    const refused = [
      `${exp}.${flipped}`,
      `${Number(exp) + 3600}.${mac}`,
      await signPlaybackToken(PLAYBACK_SIGNING_SECRET, job.id, nowSeconds - 1),
      await signPlaybackToken(PLAYBACK_SIGNING_SECRET, other.id, nowSeconds + 600),
      await signPlaybackToken("some-other-secret-0123456789", job.id, nowSeconds + 600),
      "",
      "not-a-token",
    ];
    for (const bad of refused) {
      const res = await play(url(bad));
      expect([bad, res.status]).toEqual([bad, 403]);
      expect(await res.text()).not.toContain("0123456789abcdefghij");
    }
  });

  it("refuses every other spelling of a token's last character (its two spare bits), not only other bytes", async () => {
    const { token } = await mintToken(job.id);
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const last = alphabet.indexOf(token.at(-1) as string);
    for (const spare of [1, 2, 3]) {
      const respelled = `${token.slice(0, -1)}${alphabet[last ^ spare]}`;
      expect(await verifyPlaybackToken(PLAYBACK_SIGNING_SECRET, job.id, respelled)).toEqual({
        ok: false,
        reason: "malformed",
      });
    }
    expect(await verifyPlaybackToken(PLAYBACK_SIGNING_SECRET, job.id, token)).toMatchObject({ ok: true });
  });

  it("accepts a URL signed offline with the secret, as the SDK does", async () => {
    const signed = await signPlaybackUrl(job.outputs?.hlsMaster?.url as string, PLAYBACK_SIGNING_SECRET, {
      expiresInSeconds: 60,
    });
    const res = await play(signed.url);
    expect(res.status).toBe(200);
    expect(await res.text()).toContain(`?token=${signed.token}`);
  });

  it("answers 404 for a file the package does not have, even with a valid token", async () => {
    const { token } = await mintToken(job.id);
    for (const path of ["1/hls/missing.m4s", "1/hls/..%2Fhls%2Fmaster.m3u8", "..%2F..%2Finputs%2Fx"]) {
      const res = await play(`${CONTROL_PLANE}/v1/playback/${job.id}/${path}?token=${token}`);
      expect([path, res.status]).toEqual([path, 404]);
    }
  });

  it("keeps a public job on the public base URL, and refuses it a playback token", async () => {
    const open = await completedJob("public");
    expect(open.outputs?.hlsMaster?.url).toBe(`${OUTPUTS_BASE_URL}/outputs/${open.id}/1/hls/master.m3u8`);
    const res = await cp.request(`/v1/jobs/${open.id}/playback-tokens`, { method: "POST", json: {} });
    expect(res.status).toBe(409);
    expect(((await res.json()) as { code: string }).code).toBe("invalid_state");
  });

  it("refuses a token for a job that has nothing to play yet, and validates expiresInSeconds", async () => {
    const waiting = (await (
      await cp.request("/v1/uploads", {
        method: "POST",
        json: { filename: "b.mp4", contentType: "video/mp4", size: 4, playback: "signed" },
      })
    ).json()) as { job: Job };
    expect(waiting.job.playback).toBe("signed");
    expect((await cp.request(`/v1/jobs/${waiting.job.id}/playback-tokens`, { method: "POST", json: {} })).status).toBe(
      409,
    );
    for (const expiresInSeconds of [0, 8 * 24 * 3600, 1.5]) {
      const res = await cp.request(`/v1/jobs/${job.id}/playback-tokens`, {
        method: "POST",
        json: { expiresInSeconds },
      });
      expect([expiresInSeconds, res.status]).toEqual([expiresInSeconds, 400]);
    }
    expect((await cp.request("/v1/jobs/job_nope/playback-tokens", { method: "POST", json: {} })).status).toBe(404);
  });

  it("removes a signed job's package from the private bucket when the job is deleted", async () => {
    const doomed = await completedJob("signed");
    const { url } = await mintToken(doomed.id);
    expect((await play(url)).status).toBe(200);
    expect((await cp.request(`/v1/jobs/${doomed.id}`, { method: "DELETE" })).status).toBe(204);
    expect((await play(url)).status).toBe(404);
  });
});
