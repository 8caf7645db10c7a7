/**
 * Upload files (or have sources fetched from URLs) through the public API, follow their jobs to the
 * end, optionally copy the outputs.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { isTerminal, type Job, type LoudnessSetting, sourceContentType } from "@tcoder/worker/contract";
import type { ApiClient } from "./api-client.ts";
import type { CaptionsFile } from "./arguments.ts";
import type { Progress } from "./progress.ts";
import { fetchOrExplain } from "./unreachable.ts";

export interface TranscodeOptions {
  preset?: string;
  /** Normalize audio to this loudness (the job setting). */
  loudness?: LoudnessSetting;
  /** Added to each job once it completes (captions join a finished package). */
  captions?: readonly CaptionsFile[];
  progress: Progress;
  pollMs?: number;
  signal?: AbortSignal;
}

/**
 * Uploads a file through the SDK (one PUT, or parts above its threshold and for sources over the
 * stack's SINGLE_PUT_MAX_BYTES) and follows its job to the end.
 */
export async function transcodeFile(api: ApiClient, path: string, opts: TranscodeOptions): Promise<Job> {
  const label = basename(path);
  const job = await api.upload(path, {
    filename: label,
    // An extension that names no type is declared video/mp4: the API gates on the declared type, the machine's probe on the bytes.
    contentType: sourceContentType(path) ?? "video/mp4",
    ...jobSettings(opts),
    ...(opts.signal ? { signal: opts.signal } : {}),
    onProgress: ({ jobId, fraction }) =>
      opts.progress.update(jobId, { label, phase: "upload", fraction, detail: jobId }),
  });
  return withCaptions(api, await followJob(api, job.id, label, opts), label, opts);
}

const jobSettings = (opts: TranscodeOptions) => ({
  ...(opts.preset ? { preset: opts.preset } : {}),
  ...(opts.loudness ? { loudness: opts.loudness } : {}),
});

/** A completed job with `opts.captions` added, one language after another (the API takes one change at a time). */
async function withCaptions(api: ApiClient, job: Job, label: string, opts: TranscodeOptions): Promise<Job> {
  if (job.state !== "completed" || !opts.captions?.length) return job;
  let current = job;
  for (const [i, captions] of opts.captions.entries()) {
    opts.progress.update(job.id, {
      label,
      phase: "captions",
      fraction: i / opts.captions.length,
      detail: `${captions.language} ${basename(captions.path)}`,
    });
    current = await api.addCaptions(job.id, captions);
  }
  opts.progress.update(job.id, { label, phase: "done", fraction: 1, detail: job.id });
  return current;
}

/** Creates a job whose source the machine downloads from `url`, and follows it to the end. */
export async function transcodeUrl(api: ApiClient, url: string, opts: TranscodeOptions): Promise<Job> {
  const job = await api.createJobFromUrl(url, jobSettings(opts));
  const label = job.input.filename ?? url;
  return withCaptions(api, await followJob(api, job.id, label, opts), label, opts);
}

export async function followJob(api: ApiClient, id: string, label: string, opts: TranscodeOptions): Promise<Job> {
  for (;;) {
    const job = await api.getJob(id);
    if (isTerminal(job.state)) {
      opts.progress.update(id, {
        label,
        phase: job.state === "completed" ? "done" : "failed",
        fraction: job.state === "completed" ? 1 : job.progress,
        detail: job.state === "completed" ? id : `${job.state}${job.error ? `: ${job.error.code}` : ""}`,
      });
      return job;
    }
    const where = [job.state === "running" ? job.stage : job.state, job.machineId].filter(Boolean).join(" on ");
    opts.progress.update(id, { label, phase: "transcode", fraction: job.progress, detail: where });
    await sleep(opts.pollMs ?? 500, undefined, opts.signal ? { signal: opts.signal } : {});
  }
}

/** What a person wants to see of a finished job. */
export function describeJob(job: Job): string {
  const lines = [`job ${job.id}: ${job.state} (preset ${job.preset}, attempts ${job.attempts})`];
  if (job.probe) {
    const v = job.probe.video;
    lines.push(
      `  source   ${job.probe.durationSeconds.toFixed(2)} s${v ? `, ${v.displayWidth}x${v.displayHeight} ${v.codec} ${v.frameRate.toFixed(2)} fps` : ", audio only"}`,
    );
  }
  if (job.outputs) {
    const o = job.outputs;
    if (o.hlsMaster) lines.push(`  hls      ${o.hlsMaster.url}`);
    if (o.renditions.length > 0) {
      const ladder = o.renditions.map((r) => `${r.name} ${r.width}x${r.height} ${Math.round(r.bandwidth / 1000)} kb/s`);
      lines.push(`           ${ladder.join(" · ")}`);
    }
    // One audio track is the common case and says nothing; several are the source's languages.
    if ((o.audio?.length ?? 0) > 1)
      lines.push(
        `  audio    ${(o.audio ?? []).map((a) => `${a.label}${a.language ? ` (${a.language})` : ""} ${a.channels} ch`).join(" · ")}`,
      );
    if (o.subtitles?.length)
      lines.push(
        `  subs     ${o.subtitles.map((t) => `${t.label}${t.language ? ` (${t.language})` : ""}`).join(" · ")}`,
      );
    if (o.dashManifest) lines.push(`  dash     ${o.dashManifest.url}`);
    if (o.loudness)
      lines.push(
        `  loudness ${o.loudness.renditions.map((r) => `${r.name} ${r.input.integratedLufs.toFixed(1)} → ${r.output.integratedLufs.toFixed(1)} LUFS`).join(" · ")} (target ${o.loudness.targetLufs})`,
      );
    if (o.mp4) lines.push(`  mp4      ${o.mp4.url}`);
    if (o.poster) lines.push(`  poster   ${o.poster.url}`);
    if (o.thumbnailsVtt) lines.push(`  thumbs   ${o.thumbnailsVtt.url}`);
    lines.push(`  manifest ${o.manifest.url}`);
  }
  if (job.error) lines.push(`  error    ${job.error.code}: ${job.error.message}`);
  return lines.join("\n");
}

interface PublishedManifest {
  files: { key: string }[];
}

/** Copies every file of a completed job's package (as its manifest lists them) under `outDir/<jobId>/`. */
export async function copyOutputs(job: Job, outDir: string): Promise<number> {
  if (!job.outputs) return 0;
  const manifestUrl = job.outputs.manifest.url;
  const base = manifestUrl.slice(0, manifestUrl.length - job.outputs.manifest.key.length);
  const manifestResponse = await fetchOrExplain(manifestUrl, {}, "the outputs");
  if (!manifestResponse.ok) throw new Error(`manifest ${manifestUrl}: HTTP ${manifestResponse.status}`);
  const manifestText = await manifestResponse.text();
  const manifest = JSON.parse(manifestText) as PublishedManifest;
  const prefix = `outputs/${job.id}/`;
  const target = (key: string) => join(outDir, job.id, key.startsWith(prefix) ? key.slice(prefix.length) : key);
  for (const { key } of manifest.files) {
    const response = await fetchOrExplain(
      `${base}${key.split("/").map(encodeURIComponent).join("/")}`,
      {},
      "the outputs",
    );
    if (!response.ok) throw new Error(`${key}: HTTP ${response.status}`);
    const path = target(key);
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, new Uint8Array(await response.arrayBuffer()));
  }
  const manifestPath = target(job.outputs.manifest.key);
  await mkdir(dirname(manifestPath), { recursive: true });
  await writeFile(manifestPath, manifestText);
  return manifest.files.length + 1;
}
