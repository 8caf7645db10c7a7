/** Stored jobs carry output keys; the public job carries every key with its public URL. */
import type { Job, JobOutputs, OutputKeys } from "../contract/index.ts";
import type { StoredJob } from "../state/index.ts";

export const publicUrl = (outputsBaseUrl: string, key: string): string =>
  `${outputsBaseUrl.replace(/\/+$/, "")}/${key.split("/").map(encodeURIComponent).join("/")}`;

export function presentOutputs(outputsBaseUrl: string, keys: OutputKeys): JobOutputs {
  const ref = (key: string) => ({ key, url: publicUrl(outputsBaseUrl, key) });
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
  for (const name of ["hlsMaster", "mp4", "poster", "thumbnailsVtt", "thumbnailsSprite"] as const) {
    const value = optional(keys[name]);
    if (value) outputs[name] = value;
  }
  return outputs;
}

export function presentJob(outputsBaseUrl: string, job: StoredJob): Job {
  const { outputs, ...rest } = job;
  return outputs ? { ...rest, outputs: presentOutputs(outputsBaseUrl, outputs) } : rest;
}
