/**
 * What the console takes from the SDK and the contract, in one place. Contract modules are
 * imported one by one: the contract's index carries zod, which the page does not need.
 */
export type { Job, TcoderClient, UploadProgress } from "@tcoder/client";
export { DEFAULT_MULTIPART_THRESHOLD, isTerminal, TcoderError, withPlaybackToken } from "@tcoder/client";
export { presetNames } from "@tcoder/worker/contract/presets.ts";
