/** The options every job-creating request shares: preset, callback URL and metadata. */
import type { Settings } from "../bindings.ts";
import { isPresetName, type PresetName } from "../contract/index.ts";
import { checkCallbackUrl } from "./callback-url.ts";
import { ProblemError } from "./problem.ts";

export interface JobOptions {
  preset: PresetName;
  callbackUrl?: string;
  metadata?: Record<string, string>;
}

export function resolveJobOptions(
  settings: Settings,
  request: {
    preset?: string | undefined;
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
  const options: JobOptions = { preset };
  if (request.callbackUrl !== undefined) {
    const check = checkCallbackUrl(request.callbackUrl, { allowInsecure: settings.ALLOW_INSECURE_CALLBACKS });
    if (!check.ok) throw new ProblemError("invalid_callback_url", { detail: check.reason });
    options.callbackUrl = check.url;
  }
  if (request.metadata !== undefined) options.metadata = request.metadata;
  return options;
}
