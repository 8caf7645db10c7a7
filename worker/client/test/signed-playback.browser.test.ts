/**
 * Signed playback end to end on the local stack: a job uploaded with `playback: "signed"` is
 * transcoded by a real machine into the bucket without public access, plays in Chromium through
 * hls.js from another origin with a token (minted by the API, or offline by the SDK), and ffmpeg
 * reads it too; without a token, with a tampered one or at the public base URL it is refused.
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { type LocalStack, repoRoot, startLocalStack } from "@tcoder/local/stack";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient, type Job, signPlaybackUrl } from "../src/node.ts";
import { makeClip } from "./media.ts";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const run = promisify(execFile);

let dir: string;
let stack: LocalStack;
let client: ReturnType<typeof createClient>;
let browser: BrowserContext;
let page: Page;
let site: Server;
let siteUrl: string;
let job: Job;

beforeAll(async () => {
  if (!existsSync(CHROMIUM))
    throw new Error(`${CHROMIUM} is missing: run \`node stacks/local/bootstrap.mjs --for test\``);
  dir = await mkdtemp(join(tmpdir(), "tcoder-signed-"));
  let clip: string;
  [clip, stack] = await Promise.all([
    makeClip(join(dir, "clip.mp4"), { seconds: 6, size: "640x360" }),
    startLocalStack({
      dir: join(dir, "stack"),
      maxMachines: 1,
      cronIntervalMs: 1_000,
      vars: { DEFAULT_PRESET: "hls-small" },
      machineEnv: { X264_PRESET: "ultrafast" },
    }),
  ]);
  client = createClient({ baseUrl: stack.cloud.apiUrl, token: stack.cloud.apiToken });
  const uploaded = await client.upload(clip, { playback: "signed" });
  job = await client.waitForJob(uploaded.id, { timeout: 150_000 });

  // An app's page on its own origin: hls.js fetches the worker's playback URLs cross-origin.
  const hls = await readFile(join(repoRoot, "node_modules", "hls.js", "dist", "hls.light.min.js"));
  site = createServer((req, res) => {
    if (req.url === "/hls.js") return void res.writeHead(200, { "content-type": "text/javascript" }).end(hls);
    res
      .writeHead(200, { "content-type": "text/html" })
      .end('<!doctype html><video muted></video><script src="/hls.js"></script>');
  });
  await new Promise<void>((resolve) => site.listen(0, "127.0.0.1", resolve));
  siteUrl = `http://127.0.0.1:${(site.address() as AddressInfo).port}/`;
  browser = await chromium.launchPersistentContext(join(dir, "profile"), {
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
  });
  page = browser.pages()[0] ?? (await browser.newPage());
  await page.goto(siteUrl);
}, 240_000);

afterAll(async () => {
  await browser?.close();
  await new Promise((resolve) => (site ? site.close(resolve) : resolve(undefined)));
  await stack?.stop();
  await rm(dir, { recursive: true, force: true });
});

/** Plays `url` with hls.js in the page: the video's clock after up to 15 s, or the fatal error. */
const playInPage = (url: string) =>
  page.evaluate(async (src) => {
    const Hls = (window as unknown as { Hls: typeof import("hls.js").default }).Hls;
    const video = document.querySelector("video") as HTMLVideoElement;
    const hls = new Hls();
    const fatal = new Promise<string>((resolve) =>
      hls.on(Hls.Events.ERROR, (_, data) => {
        if (data.fatal) resolve(`${data.details} ${data.response?.code ?? ""}`.trim());
      }),
    );
    hls.loadSource(src);
    hls.attachMedia(video);
    const played = (async () => {
      await new Promise((resolve) => hls.on(Hls.Events.MANIFEST_PARSED, resolve));
      await video.play();
      const until = Date.now() + 15_000;
      while (video.currentTime < 1 && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
      return video.currentTime;
    })();
    const outcome = await Promise.race([played.then((time) => ({ time })), fatal.then((error) => ({ error }))]);
    hls.destroy();
    return outcome;
  }, url);

describe("a job created with playback: signed", () => {
  it("is transcoded into the bucket without public access; its record points at the worker", async () => {
    expect(job).toMatchObject({ state: "completed", playback: "signed" });
    const master = job.outputs?.hlsMaster;
    expect(master?.url.startsWith(`${stack.cloud.apiUrl}/v1/playback/${job.id}/`)).toBe(true);
    // Neither the public base URL nor an anonymous read of the private bucket serves it.
    expect((await fetch(`${stack.cloud.settings.OUTPUTS_BASE_URL}/${master?.key}`)).status).toBe(404);
    const { S3_ENDPOINT, INPUT_BUCKET } = stack.cloud.settings;
    expect((await fetch(`${S3_ENDPOINT}/${INPUT_BUCKET}/${master?.key}`)).status).toBe(403);
  });

  it("plays in Chromium through hls.js with a token minted by the API", async () => {
    const { url } = await client.createPlaybackToken(job.id, { expiresInSeconds: 300 });
    const outcome = (await playInPage(url)) as { time?: number; error?: string };
    expect(outcome.error).toBeUndefined();
    expect(outcome.time).toBeGreaterThan(1);
  });

  it("plays with a URL the SDK signed offline from the secret", async () => {
    const signed = await signPlaybackUrl(
      job.outputs?.hlsMaster?.url as string,
      stack.cloud.settings.PLAYBACK_SIGNING_SECRET,
      {
        expiresInSeconds: 120,
      },
    );
    const outcome = (await playInPage(signed.url)) as { time?: number; error?: string };
    expect(outcome.error).toBeUndefined();
    expect(outcome.time).toBeGreaterThan(1);
  });

  it("is refused without a token or with a tampered one (403, nothing plays)", async () => {
    expect(await playInPage(job.outputs?.hlsMaster?.url as string)).toEqual({ error: "manifestLoadError 403" });
    const { url, token } = await client.createPlaybackToken(job.id);
    const tampered = url.replace(token, `${token.slice(0, -1)}${token.endsWith("A") ? "B" : "A"}`);
    expect(await playInPage(tampered)).toEqual({ error: "manifestLoadError 403" });
  });

  it("is read by ffmpeg through the signed master playlist, every segment with the token", async () => {
    const { url } = await client.createPlaybackToken(job.id);
    const { stdout } = await run("ffprobe", [
      ...["-v", "error", "-show_entries", "format=duration", "-of", "default=nw=1:nk=1", url],
    ]);
    expect(Number(stdout.trim())).toBeGreaterThan(5);
    await run("ffmpeg", ["-v", "error", "-i", url, "-map", "0:v:0", "-f", "null", "-"]);
  });
});
