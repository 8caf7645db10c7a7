/**
 * Verifying the signed callback tcoder POSTs to a job's `callbackUrl`. The signature scheme is the
 * contract's (WebCrypto HMAC-SHA256, compared in constant time by `crypto.subtle.verify`), so it
 * runs in Node 20, browsers, workers and Deno alike.
 */
import { DEFAULT_TOLERANCE_SECONDS, SIGNATURE_HEADER, verifySignature } from "@tcoder/worker/contract/signing.ts";

export { SIGNATURE_HEADER as WEBHOOK_SIGNATURE_HEADER };

export type WebhookVerification =
  | { ok: true; timestamp: number }
  | { ok: false; reason: "malformed" | "stale" | "mismatch" };

/**
 * Checks the `tcoder-signature` header against the raw request body (exactly the bytes received,
 * before any JSON parsing). `tolerance` is in seconds (default 300): older or future-dated
 * signatures are refused so a captured request cannot be replayed later.
 */
export function verifyWebhook(
  rawBody: string,
  header: string | null | undefined,
  secret: string,
  opts: { tolerance?: number; nowSeconds?: number } = {},
): Promise<WebhookVerification> {
  return verifySignature(secret, rawBody, header, {
    toleranceSeconds: opts.tolerance ?? DEFAULT_TOLERANCE_SECONDS,
    ...(opts.nowSeconds === undefined ? {} : { nowSeconds: opts.nowSeconds }),
  });
}
