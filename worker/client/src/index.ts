/**
 * `@tcoder/client`: the tcoder API from apps and browsers. File paths (Node only) are accepted by
 * the `createClient` of `@tcoder/client/node`.
 */
export {
  type ClientOptions,
  createClient,
  DEFAULT_MULTIPART_THRESHOLD,
  DEFAULT_PART_SIZE,
  guessContentType,
  isTerminal,
  type TcoderClient,
  type UploadSource,
} from "./client.ts";
export { type ClientErrorCode, clientErrorCodes, type ProblemDocument, TcoderError } from "./errors.ts";
export { signPlaybackUrl, withPlaybackToken } from "./playback.ts";
export * from "./types.ts";
export { verifyWebhook, WEBHOOK_SIGNATURE_HEADER, type WebhookVerification } from "./webhook.ts";
