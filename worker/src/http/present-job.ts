/**
 * Stored jobs carry output keys; the public job carries every key with its URL: under the public
 * base URL, or for signed playback the worker's playback URL (without a token: 403 until one is
 * added, see contract/playback.ts).
 */
import type { Settings } from "../bindings.ts";
import { type Job, type JobOutputs, type OutputKeys, playbackUrl } from "../contract/index.ts";
import type { StoredJob } from "../state/index.ts";

export type PresentSettings = Pick<Settings, "OUTPUTS_BASE_URL" | "CONTROL_PLANE_URL">;

export const publicUrl = (outputsBaseUrl: string, key: string): string =>
  `${outputsBaseUrl.replace(/\/+$/, "")}/${key.split("/").map(encodeURIComponent).join("/")}`;

export function presentOutputs(urlOf: (key: string) => string, keys: OutputKeys): JobOutputs {
  const ref = (key: string) => ({ key, url: urlOf(key) });
  const optional = (key: string | undefined) => (key === undefined ? undefined : ref(key));
  const outputs: JobOutputs = {
    manifest: ref(keys.manifest),
    renditions: (keys.renditions ?? []).map((r) => ({
      name: r.name,
      width: r.width,
      height: r.height,
      bandwidth: r.bandwidth,
      playlist: ref(r.playlist),
    })),
  };
  if (keys.audio) outputs.audio = keys.audio.map((a) => ({ ...a, playlist: ref(a.playlist) }));
  if (keys.subtitles)
    outputs.subtitles = keys.subtitles.map((s) => ({ ...s, playlist: ref(s.playlist), vtt: ref(s.vtt) }));
  if (keys.skippedSubtitles) outputs.skippedSubtitles = keys.skippedSubtitles;
  if (keys.loudness) outputs.loudness = keys.loudness;
  for (const name of ["hlsMaster", "dashManifest", "mp4", "poster", "thumbnailsVtt", "thumbnailsSprite"] as const) {
    const value = optional(keys[name]);
    if (value) outputs[name] = value;
  }
  return outputs;
}

export function presentJob(settings: PresentSettings, job: StoredJob): Job {
  const { outputs, live, ...rest } = job;
  const urlOf =
    job.playback === "signed"
      ? (key: string) => playbackUrl(settings.CONTROL_PLANE_URL, key)
      : (key: string) => publicUrl(settings.OUTPUTS_BASE_URL, key);
  return {
    ...rest,
    ...(outputs ? { outputs: presentOutputs(urlOf, outputs) } : {}),
    ...(live ? { live: { hlsMaster: { key: live.hlsMaster, url: urlOf(live.hlsMaster) } } } : {}),
  };
}
