/**
 * HLS playback: hls.js over Media Source Extensions where the browser has them, the browser's own
 * HLS (Safari, iOS) otherwise, whose controls offer audio and subtitle tracks themselves. With
 * hls.js the player offers the package's alternate audio renditions and subtitle renditions (the
 * source's and captions added later) as two menus. Thumbnail scrubbing reads the job's WebVTT
 * sprite index.
 */
// The full build: the light one leaves out alternate audio and subtitles.
import Hls from "hls.js";
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
  let tracks: HTMLElement | null = null;
  if (Hls.isSupported()) {
    hls = new Hls({ enableWorker: false });
    hls.on(Hls.Events.ERROR, (_event, data) => {
      if (data.fatal) note.textContent = `Playback error: ${data.details}`;
    });
    hls.loadSource(opts.src);
    hls.attachMedia(video);
    note.textContent = "Playing with hls.js (Media Source Extensions).";
    tracks = trackMenus(hls);
  } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
    video.src = opts.src;
    note.textContent = "Playing with the browser's native HLS.";
  } else {
    note.textContent = "This browser cannot play HLS; use the MP4 link below.";
  }
  const element = h("div", { class: "player" }, video, tracks, note);
  if (opts.thumbnailsVtt) element.append(scrubber(video, opts.thumbnailsVtt));
  return {
    element,
    dispose() {
      hls?.destroy();
      video.removeAttribute("src");
    },
  };
}

/** NAME is the stream's title or its language's name (the machine and the captions API write one). */
const trackName = (track: { name: string; lang?: string | undefined }, index: number) =>
  track.name || track.lang || `Track ${index + 1}`;

/**
 * An "Audio" and a "Subtitles" menu, each shown once the package offers a choice (two audio tracks
 * or more; any subtitles). A pick switches hls.js's track; the menu shows what hls.js switched to
 * (`data-active`), so what it says is what plays.
 */
function trackMenus(hls: Hls): HTMLElement {
  const audio = h("select", { id: "audio-track" });
  const subtitles = h("select", { id: "subtitle-track" });
  const audioField = h("div", { class: "field", hidden: true }, h("label", { for: "audio-track" }, "Audio"), audio);
  const subtitlesField = h(
    "div",
    { class: "field", hidden: true },
    h("label", { for: "subtitle-track" }, "Subtitles"),
    subtitles,
  );
  const showAudio = () => {
    audio.replaceChildren(...hls.audioTracks.map((t, i) => h("option", { value: i }, trackName(t, i))));
    audio.value = String(hls.audioTrack);
    audio.dataset.active = String(hls.audioTrack);
    audioField.hidden = hls.audioTracks.length < 2;
  };
  const showSubtitles = () => {
    subtitles.replaceChildren(
      h("option", { value: -1 }, "Off"),
      ...hls.subtitleTracks.map((t, i) => h("option", { value: i }, trackName(t, i))),
    );
    subtitles.value = String(hls.subtitleTrack);
    subtitles.dataset.active = String(hls.subtitleTrack);
    subtitlesField.hidden = hls.subtitleTracks.length === 0;
  };
  hls.on(Hls.Events.AUDIO_TRACKS_UPDATED, showAudio);
  hls.on(Hls.Events.AUDIO_TRACK_SWITCHED, showAudio);
  hls.on(Hls.Events.SUBTITLE_TRACKS_UPDATED, showSubtitles);
  hls.on(Hls.Events.SUBTITLE_TRACK_SWITCH, showSubtitles);
  audio.addEventListener("change", () => {
    hls.audioTrack = Number(audio.value);
  });
  subtitles.addEventListener("change", () => {
    hls.subtitleDisplay = true;
    hls.subtitleTrack = Number(subtitles.value);
  });
  return h("div", { class: "tracks" }, audioField, subtitlesField);
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
