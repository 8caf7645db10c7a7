/** The options every job-creating request shares: preset, playback policy, loudness, callback URL and metadata. */
import type { Settings } from "../bindings.ts";
import { isPresetName, type LoudnessSetting, type PlaybackPolicy, type PresetName } from "../contract/index.ts";
import { checkCallbackUrl } from "./callback-url.ts";
import { ProblemError } from "./problem.ts";

export interface JobOptions {
  preset: PresetName;
  playback: PlaybackPolicy;
  loudness?: LoudnessSetting;
  callbackUrl?: string;
  metadata?: Record<string, string>;
}

export function resolveJobOptions(
  settings: Settings,
  request: {
    preset?: string | undefined;
    playback?: PlaybackPolicy | undefined;
    loudness?: LoudnessSetting | undefined;
    callbackUrl?: string | undefined;
    metadata?: Record<string, string> | undefined;
  },
): JobOptions {
  const preset = request.preset ?? settings.DEFAULT_PRESET;
  if (!isPresetName(preset)) {
    if (request.preset === undefined)
      throw new ProblemError("misconfigured", { detail: "missing or invalid setting(s): DEFAULT_PRESET" });
    throw new ProblemError("unknown_preset", { detail: `no preset named ${JSON.stringify(preset)}` });
  }
  const options: JobOptions = { preset, playback: request.playback ?? "public" };
  if (request.callbackUrl !== undefined) {
    const check = checkCallbackUrl(request.callbackUrl, { allowInsecure: settings.ALLOW_INSECURE_CALLBACKS });
    if (!check.ok) throw new ProblemError("invalid_callback_url", { detail: check.reason });
    options.callbackUrl = check.url;
  }
  if (request.loudness !== undefined) options.loudness = request.loudness;
  if (request.metadata !== undefined) options.metadata = request.metadata;
  return options;
}
