/**
 * The web console in real Chromium (Debian's `chromium`, driven by playwright-core; no browser
 * download) against the local stack: sign in with the API token, upload a clip, watch it reach
 * done, and play the HLS output until the video's clock moves; switch audio and subtitle tracks of
 * a film with two languages and subtitles (plus captions added through the API); play a signed job
 * with a token the console asks the API for; delete a job after confirming. `UPDATE_SCREENSHOTS=1` saves the
 * screenshots as docs/console-*.png.
 */
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { type LocalStack, repoRoot, startLocalStack } from "@tcoder/local/stack";
import { type BrowserContext, chromium, type Locator, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeClip, makeMultilingualClip, makeRawClip } from "./media.ts";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
/** Screenshots refresh docs/console-*.png with UPDATE_SCREENSHOTS=1; otherwise they go to the temp dir. */
const updateDocs = process.env.UPDATE_SCREENSHOTS === "1";
let docs: string;

let dir: string;
let stack: LocalStack;
let browser: BrowserContext;
let page: Page;
let clip: string;
const consoleErrors: string[] = [];

beforeAll(async () => {
  if (!existsSync(CHROMIUM))
    throw new Error(
      `${CHROMIUM} is missing: run \`node stacks/local/bootstrap.mjs --for test\` (installs Debian's chromium)`,
    );
  dir = await mkdtemp(join(tmpdir(), "tcoder-console-"));
  [clip, stack] = await Promise.all([
    makeClip(join(dir, "beach.mp4"), { seconds: 6, size: "640x360" }),
    // 12 s chunks: a one-minute clip is a chunked job (over three chunks), the others are not.
    startLocalStack({ dir: join(dir, "stack"), maxMachines: 1, cronIntervalMs: 1_000, vars: { CHUNK_SECONDS: "12" } }),
  ]);
  browser = await chromium.launchPersistentContext(join(dir, "profile"), {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    viewport: { width: 1280, height: 900 },
  });
  page = browser.pages()[0] ?? (await browser.newPage());
  page.on("console", (message) => {
    if (message.type() === "error") consoleErrors.push(message.text());
  });
  page.on("pageerror", (error) => consoleErrors.push(error.message));
  docs = updateDocs ? join(repoRoot, "docs") : join(dir, "screenshots");
  await mkdir(docs, { recursive: true });
});

afterAll(async () => {
  await browser?.close();
  await stack?.stop();
  await rm(dir, { recursive: true, force: true });
});

/** Picks `file` in the console's file input and waits for its card to settle; returns the card. */
async function uploadThroughConsole(file: string, preset: string) {
  await page.getByLabel("Preset").selectOption(preset);
  await page.locator("#files").setInputFiles(file);
  const card = page.locator(`li.upload[data-file="${basename(file)}"]`);
  await card.waitFor();
  await card.and(page.locator(':is([data-state="completed"], [data-state="failed"], [data-state="error"])')).waitFor({
    timeout: 150_000,
  });
  return card;
}

/** Plays the page's video, muted, until its clock passes 1 s (15 s at most): where it got, and the job's state then. */
const playASecond = (video: Locator) =>
  video.evaluate(async (v) => {
    const el = v as HTMLVideoElement;
    el.muted = true;
    await el.play().catch(() => {});
    const until = Date.now() + 15_000;
    while (el.currentTime < 1 && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
    el.pause();
    return { time: el.currentTime, state: document.querySelector("article.job")?.getAttribute("data-state") };
  });

describe("web console", () => {
  it("is served with hono/secure-headers and a CSP that names the API and the store", async () => {
    const headers = (await page.goto(stack.cloud.apiUrl))?.headers() ?? {};
    const store = new URL(stack.cloud.settings.S3_ENDPOINT).origin;
    expect(headers["content-security-policy"]).toContain(`connect-src 'self' ${store}`);
    expect(headers["content-security-policy"]).toContain("default-src 'none'");
    expect(headers).toMatchObject({
      "x-content-type-options": "nosniff",
      "referrer-policy": "no-referrer",
      "cross-origin-opener-policy": "same-origin",
    });
  });

  it("refuses a wrong token and signs in with the right one", async () => {
    await page.goto(stack.cloud.apiUrl);
    const token = page.getByLabel("API token");
    await token.fill("not-the-token");
    await token.press("Enter");
    await expect.poll(() => page.getByRole("alert").textContent()).toContain("unauthorized");
    await page.screenshot({ path: join(docs, "console-signin.png") });

    await token.fill(stack.cloud.apiToken);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("heading", { name: "Upload" }).waitFor();
    expect(await page.evaluate(() => sessionStorage.getItem("tcoder.apiToken"))).toBe(stack.cloud.apiToken);
    // The refused token's 401 is the one error the page was expected to log.
    consoleErrors.splice(0);
  });

  it("uploads a clip and shows upload and transcode progress until done", async () => {
    const card = await uploadThroughConsole(clip, "hls-small");
    expect(await card.getAttribute("data-state")).toBe("completed");
    const bars = card.locator("progress");
    expect(await bars.evaluateAll((all) => all.map((bar) => (bar as HTMLProgressElement).value))).toEqual([1, 1]);
    await page.locator('tr[data-state="completed"]').first().waitFor();
    await page.screenshot({ path: join(docs, "console-jobs.png"), fullPage: true });
  });

  it("plays the HLS output on the job page: the video's currentTime advances", async () => {
    await page.locator('li.upload[data-file="beach.mp4"] a').click();
    const video = page.locator(".player video");
    await video.waitFor({ timeout: 30_000 });
    const playback = await page.locator("[data-playback]").textContent();
    const played = await video.evaluate(async (v) => {
      const el = v as HTMLVideoElement;
      el.muted = true;
      try {
        await el.play();
      } catch (err) {
        return { error: String(err), time: el.currentTime };
      }
      const until = Date.now() + 15_000;
      while (el.currentTime < 1 && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
      el.pause();
      return { error: el.error ? `media error ${el.error.code}: ${el.error.message}` : null, time: el.currentTime };
    });
    expect(playback).toContain("hls.js");
    expect(played.error).toBeNull();
    expect(played.time).toBeGreaterThan(1);

    await page.getByLabel("Scrub through thumbnails").waitFor();
    await page.getByRole("link", { name: "HLS master playlist" }).waitFor();
    await page.screenshot({ path: join(docs, "console-job.png"), fullPage: true });

    await page.setViewportSize({ width: 390, height: 844 });
    await page.screenshot({ path: join(docs, "console-mobile.png"), fullPage: true });
    expect(consoleErrors).toEqual([]);
  });

  it("offers the audio and subtitle tracks of a film and switches to each one picked", async () => {
    await page.setViewportSize({ width: 1280, height: 900 });
    await page.goto(`${stack.cloud.apiUrl}/#/`);
    const film = await makeMultilingualClip(join(dir, "film.mkv"));
    const card = await uploadThroughConsole(film, "hls-small");
    expect(await card.getAttribute("data-state")).toBe("completed");
    const jobId = (await card.locator("a").getAttribute("href"))?.replace("#/jobs/", "") as string;
    // Captions added after the fact are offered as well as the source's subtitles.
    const added = await fetch(`${stack.cloud.apiUrl}/v1/jobs/${jobId}/captions?language=de`, {
      method: "POST",
      headers: { authorization: `Bearer ${stack.cloud.apiToken}`, "content-type": "text/vtt" },
      body: "WEBVTT\n\n00:00:02.000 --> 00:00:04.000\nHallo\n",
    });
    expect(added.status).toBe(200);

    // Which audio renditions the page fetches segments of: hls.js loads only the track it plays.
    const audioFetched = new Set<string>();
    page.on("request", (request) => {
      const rendition = /\/hls\/(audio-[^/]+)\/seg_/.exec(request.url())?.[1];
      if (rendition) audioFetched.add(rendition);
    });
    await card.locator("a").click();
    const video = page.locator(".player video");
    await video.waitFor({ timeout: 30_000 });
    const audio = page.getByLabel("Audio");
    const subtitles = page.getByLabel("Subtitles");
    await audio.waitFor();
    await subtitles.waitFor();
    const options = (select: typeof audio) => select.locator("option").allTextContents();
    expect(await options(audio)).toEqual(["English", "Français"]);
    expect(await options(subtitles)).toEqual(["Off", "French", "German"]);
    // The source's default track plays first, with no subtitles.
    await page.locator('#audio-track[data-active="0"]').waitFor({ timeout: 30_000 });
    expect(await audio.inputValue()).toBe("0");
    expect(await subtitles.inputValue()).toBe("-1");
    await video.evaluate((v) => {
      const el = v as HTMLVideoElement;
      el.muted = true;
      void el.play();
    });
    await expect.poll(() => [...audioFetched], { timeout: 30_000 }).toEqual(["audio-0"]);

    // Each audio track picked is the one hls.js switches to and fetches.
    await audio.selectOption({ label: "Français" });
    await page.locator('#audio-track[data-active="1"]').waitFor({ timeout: 30_000 });
    await expect.poll(() => audioFetched.has("audio-1"), { timeout: 30_000 }).toBe(true);
    audioFetched.clear();
    await audio.selectOption({ label: "English" });
    await page.locator('#audio-track[data-active="0"]').waitFor({ timeout: 30_000 });

    // Each subtitle track picked shows its cues at the source's times; Off hides them all.
    const showing = () =>
      video.evaluate((v) =>
        [...(v as HTMLVideoElement).textTracks]
          .filter((t) => t.mode === "showing")
          .map((t) => ({
            language: t.language,
            cues: [...(t.cues ?? [])].map(
              (c) => `${c.startTime.toFixed(1)}-${c.endTime.toFixed(1)} ${(c as VTTCue).text}`,
            ),
          })),
      );
    await video.evaluate((v) => {
      (v as HTMLVideoElement).currentTime = 0;
    });
    await subtitles.selectOption({ label: "French" });
    await page.locator('#subtitle-track[data-active="0"]').waitFor({ timeout: 30_000 });
    await expect
      .poll(showing, { timeout: 30_000 })
      .toEqual([{ language: "fr", cues: expect.arrayContaining(["1.0-3.0 Bonjour"]) }]);
    await subtitles.selectOption({ label: "German" });
    await page.locator('#subtitle-track[data-active="1"]').waitFor({ timeout: 30_000 });
    await expect.poll(showing, { timeout: 30_000 }).toEqual([{ language: "de", cues: ["2.0-4.0 Hallo"] }]);
    await subtitles.selectOption({ label: "Off" });
    await page.locator('#subtitle-track[data-active="-1"]').waitFor({ timeout: 30_000 });
    await expect.poll(showing).toEqual([]);
    await video.evaluate((v) => (v as HTMLVideoElement).pause());
    expect(consoleErrors).toEqual([]);
  });

  it("uploads a large file in parts from the browser, resumes it after a lost part, and it transcodes", async () => {
    const big = await makeRawClip(join(dir, "big.mkv"), 12); // 37 MB: 5 parts of 8 MiB
    await page.setViewportSize({ width: 1280, height: 900 });
    await page.goto(`${stack.cloud.apiUrl}/#/`);
    const stored = new Set<string>();
    page.on("requestfinished", async (request) => {
      const part = new URL(request.url()).searchParams.get("partNumber");
      if (request.method() === "PUT" && part && (await request.response())?.ok()) stored.add(part);
    });
    // Part 3 never arrives until the person presses Resume.
    let dropPart3 = true;
    await page.route(
      (url) => url.searchParams.get("partNumber") === "3",
      (route) => (dropPart3 && route.request().method() === "PUT" ? route.abort("connectionreset") : route.continue()),
    );

    const card = await uploadThroughConsole(big, "mp4-720p");
    expect(await card.getAttribute("data-state")).toBe("error");
    expect(await card.getByRole("alert").textContent()).toContain("upload_failed");
    expect(stored.has("3")).toBe(false);
    expect(stored.size).toBeGreaterThan(0);
    // The failed part's request was the only error the page logged.
    expect(consoleErrors.every((line) => /ERR_CONNECTION_RESET/.test(line))).toBe(true);

    dropPart3 = false;
    await card.getByRole("button", { name: "Resume" }).click();
    await card.and(page.locator('[data-state="completed"]')).waitFor({ timeout: 150_000 });
    expect([...stored].sort()).toEqual(["1", "2", "3", "4", "5"]);
    await page.unroute(() => true);
  });

  it("cancels and retries from the job page and shows a failure with its code", async () => {
    // A job whose source never arrives: cancel it, retry it, and the machine reports it missing.
    const created = (await fetch(`${stack.cloud.apiUrl}/v1/uploads`, {
      method: "POST",
      headers: { authorization: `Bearer ${stack.cloud.apiToken}`, "content-type": "application/json" },
      body: JSON.stringify({ filename: "ghost.mp4", contentType: "video/mp4", size: 1000, preset: "mp4-720p" }),
    }).then((res) => res.json())) as { jobId: string };
    await page.goto(`${stack.cloud.apiUrl}/#/jobs/${created.jobId}`);
    const job = page.locator("article.job");
    await job.and(page.locator('[data-state="awaiting_upload"]')).waitFor();

    await page.getByRole("button", { name: "Cancel" }).click();
    await job.and(page.locator('[data-state="canceled"]')).waitFor();
    await page.getByRole("button", { name: "Retry" }).click();
    await job.and(page.locator('[data-state="failed"]')).waitFor({ timeout: 60_000 });
    expect(await job.getByRole("alert").textContent()).toMatch(/^input_missing /);
    expect(await page.getByRole("button", { name: "Retry" }).isVisible()).toBe(true);
  });

  it("plays a signed job with a token the console asks the API for", async () => {
    const api = (path: string, init: RequestInit = {}) =>
      fetch(`${stack.cloud.apiUrl}${path}`, {
        ...init,
        headers: { authorization: `Bearer ${stack.cloud.apiToken}`, "content-type": "application/json" },
      }).then((res) => res.json() as Promise<Record<string, unknown>>);
    const bytes = await readFile(clip);
    const ticket = (await api("/v1/uploads", {
      method: "POST",
      body: JSON.stringify({
        filename: "signed.mp4",
        contentType: "video/mp4",
        size: bytes.length,
        preset: "hls-small",
        playback: "signed",
      }),
    })) as { jobId: string; upload: { url: string; headers: Record<string, string> } };
    await fetch(ticket.upload.url, { method: "PUT", headers: ticket.upload.headers, body: bytes });
    await expect
      .poll(async () => (await api(`/v1/jobs/${ticket.jobId}`)).state, { timeout: 150_000, interval: 500 })
      .toBe("completed");

    await page.goto(`${stack.cloud.apiUrl}/#/jobs/${ticket.jobId}`);
    const video = page.locator(".player video");
    await video.waitFor({ timeout: 30_000 });
    expect((await playASecond(video)).time).toBeGreaterThan(1);
    const master = await page.getByRole("link", { name: "HLS master playlist" }).getAttribute("href");
    expect(master).toMatch(new RegExp(`/v1/playback/${ticket.jobId}/.*master\\.m3u8\\?token=\\d+\\.`));
    expect(await page.getByText("signed (token required)").isVisible()).toBe(true);
  });

  it("plays a long (chunked) job from its live playlists while it is still encoding", async () => {
    // Over three chunks of CHUNK_SECONDS: the first chunk is one GOP, so it plays long before the rest.
    const long = await makeClip(join(dir, "lecture.mp4"), { seconds: 64, size: "640x360" });
    const bytes = await readFile(long);
    const ticket = (await fetch(`${stack.cloud.apiUrl}/v1/uploads`, {
      method: "POST",
      headers: { authorization: `Bearer ${stack.cloud.apiToken}`, "content-type": "application/json" },
      body: JSON.stringify({
        filename: "lecture.mp4",
        contentType: "video/mp4",
        size: bytes.length,
        preset: "hls-small",
      }),
    }).then((res) => res.json())) as { jobId: string; upload: { url: string; headers: Record<string, string> } };
    await fetch(ticket.upload.url, { method: "PUT", headers: ticket.upload.headers, body: bytes });

    await page.goto(`${stack.cloud.apiUrl}/#/jobs/${ticket.jobId}`);
    const job = page.locator("article.job");
    await page.getByText("Playing while it encodes").waitFor({ timeout: 120_000 });
    const video = page.locator(".player video");
    await video.waitFor();
    const played = await playASecond(video);
    expect(played.time).toBeGreaterThan(1);
    expect(played.state, "still encoding while it played").toBe("running");
    // Once done, the page shows the finished package.
    await job.and(page.locator('[data-state="completed"]')).waitFor({ timeout: 150_000 });
    await page.getByRole("link", { name: "HLS master playlist" }).waitFor({ timeout: 30_000 });
  });

  it("deletes a job from its page only after the person confirms", async () => {
    const created = (await fetch(`${stack.cloud.apiUrl}/v1/uploads`, {
      method: "POST",
      headers: { authorization: `Bearer ${stack.cloud.apiToken}`, "content-type": "application/json" },
      body: JSON.stringify({ filename: "unwanted.mp4", contentType: "video/mp4", size: 1000 }),
    }).then((res) => res.json())) as { jobId: string };
    await page.goto(`${stack.cloud.apiUrl}/#/jobs/${created.jobId}`);
    const job = page.locator("article.job");
    await job.and(page.locator('[data-state="awaiting_upload"]')).waitFor();

    await page.getByRole("button", { name: "Delete…" }).click();
    const question = page.getByRole("alertdialog");
    expect(await question.textContent()).toContain("Delete unwanted.mp4? Its source and every output are removed");
    await page.getByRole("button", { name: "Keep" }).click();
    expect(await question.count()).toBe(0);
    expect(await job.getAttribute("data-state")).toBe("awaiting_upload");

    await page.getByRole("button", { name: "Delete…" }).click();
    await page.getByRole("button", { name: "Delete for good" }).click();
    await job.and(page.locator('[data-state="deleted"]')).waitFor();
    expect(await page.getByRole("button", { name: "Delete…" }).count()).toBe(0);
    const record = (await fetch(`${stack.cloud.apiUrl}/v1/jobs/${created.jobId}`, {
      headers: { authorization: `Bearer ${stack.cloud.apiToken}` },
    }).then((res) => res.json())) as { state: string };
    expect(record.state).toBe("deleted");
  });
});
