/**
 * HLS playback: hls.js over Media Source Extensions where the browser has them, the browser's own
 * HLS (Safari, iOS) otherwise. Thumbnail scrubbing reads the job's WebVTT sprite index.
 */
import Hls from "hls.js/light";
import { h } from "./dom.ts";

export interface PlayerHandle {
  element: HTMLElement;
  dispose(): void;
}

export function hlsPlayer(opts: { src: string; poster?: string; thumbnailsVtt?: string; title: string }): PlayerHandle {
  const video = h("video", {
    controls: true,
    playsinline: true,
    preload: "metadata",
    "aria-label": `Video: ${opts.title}`,
    ...(opts.poster ? { poster: opts.poster } : {}),
  });
  const note = h("p", { class: "muted", "data-playback": "" });
  let hls: Hls | null = null;
  if (Hls.isSupported()) {
    hls = new Hls({ enableWorker: false });
    hls.on(Hls.Events.ERROR, (_event, data) => {
      if (data.fatal) note.textContent = `Playback error: ${data.details}`;
    });
    hls.loadSource(opts.src);
    hls.attachMedia(video);
    note.textContent = "Playing with hls.js (Media Source Extensions).";
  } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
    video.src = opts.src;
    note.textContent = "Playing with the browser's native HLS.";
  } else {
    note.textContent = "This browser cannot play HLS; use the MP4 link below.";
  }
  const element = h("div", { class: "player" }, video, note);
  if (opts.thumbnailsVtt) element.append(scrubber(video, opts.thumbnailsVtt));
  return {
    element,
    dispose() {
      hls?.destroy();
      video.removeAttribute("src");
    },
  };
}

interface SpriteCue {
  start: number;
  end: number;
  url: string;
  x: number;
  y: number;
  w: number;
  h: number;
}

const seconds = (stamp: string) =>
  stamp
    .trim()
    .split(":")
    .reduce((total, part) => total * 60 + Number(part), 0);

/** Parses `start --> end` + `sprite.jpg#xywh=x,y,w,h` cues; the sprite URL is relative to the VTT. */
export function parseSpriteVtt(text: string, vttUrl: string): SpriteCue[] {
  const cues: SpriteCue[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const timing = /^([\d:.]+)\s+-->\s+([\d:.]+)/.exec(lines[i] ?? "");
    const target = /^(.*)#xywh=(\d+),(\d+),(\d+),(\d+)$/.exec((lines[i + 1] ?? "").trim());
    if (!timing || !target) continue;
    cues.push({
      start: seconds(timing[1] ?? "0"),
      end: seconds(timing[2] ?? "0"),
      url: new URL(target[1] ?? "", vttUrl).toString(),
      x: Number(target[2]),
      y: Number(target[3]),
      w: Number(target[4]),
      h: Number(target[5]),
    });
  }
  return cues;
}

/** A seek slider that previews the sprite frame under it; arrow keys work as on any range input. */
function scrubber(video: HTMLVideoElement, vttUrl: string): HTMLElement {
  const preview = h("div", { class: "thumb", "aria-hidden": "true" });
  const time = h("output", { for: "scrub" }, "0:00");
  const range = h("input", {
    type: "range",
    id: "scrub",
    min: 0,
    max: 0,
    step: 0.1,
    value: 0,
    "aria-describedby": "scrub-help",
  });
  const box = h(
    "div",
    { class: "scrubber", hidden: true },
    h("label", { for: "scrub" }, "Scrub through thumbnails"),
    h("div", { class: "scrub-row" }, range, time),
    h("p", { id: "scrub-help", class: "muted" }, "Move to preview a frame; release to seek the video there."),
    preview,
  );
  const clock = (t: number) => `${Math.floor(t / 60)}:${String(Math.floor(t % 60)).padStart(2, "0")}`;
  let cues: SpriteCue[] = [];
  const show = (t: number) => {
    time.textContent = clock(t);
    const cue = cues.find((c) => t >= c.start && t < c.end) ?? cues.at(-1);
    if (!cue) return;
    preview.style.width = `${cue.w}px`;
    preview.style.height = `${cue.h}px`;
    preview.style.backgroundImage = `url("${cue.url}")`;
    preview.style.backgroundPosition = `-${cue.x}px -${cue.y}px`;
  };
  range.addEventListener("input", () => show(Number(range.value)));
  range.addEventListener("change", () => {
    video.currentTime = Number(range.value);
  });
  video.addEventListener("timeupdate", () => {
    if (document.activeElement === range) return;
    range.value = String(video.currentTime);
    time.textContent = clock(video.currentTime);
  });
  fetch(vttUrl)
    .then((res) => (res.ok ? res.text() : Promise.reject(new Error(`HTTP ${res.status}`))))
    .then((text) => {
      cues = parseSpriteVtt(text, vttUrl);
      const duration = cues.at(-1)?.end ?? 0;
      if (cues.length === 0 || duration <= 0) return;
      range.max = String(duration);
      box.hidden = false;
      show(0);
    })
    .catch(() => {
      // No thumbnails then; the player itself still works.
    });
  return box;
}
