/**
 * Signing playback URLs without calling the API, as Mux's and Stream's SDKs sign tokens: an app
 * that holds PLAYBACK_SIGNING_SECRET turns any output URL of a signed job (as the job record gives
 * it) into one that plays until it expires. The scheme is the contract's (WebCrypto HMAC-SHA256),
 * so it runs in Node 20, browsers, workers and Deno alike; keep the secret on your server.
 */
import { PLAYBACK_TOKEN_PARAM, signPlaybackUrl as signWithContract } from "@tcoder/worker/contract/playback.ts";

/** Any output URL of a signed job with a token for that job (from `createPlaybackToken` or `signPlaybackUrl`). */
export function withPlaybackToken(url: string, token: string): string {
  const signed = new URL(url);
  signed.searchParams.set(PLAYBACK_TOKEN_PARAM, token);
  return signed.toString();
}

/**
 * `url` plus `?token=…`, valid `expiresInSeconds` (at most a week) from now; the token opens every
 * file of the same job, and the playlists the worker serves pass it on to every segment.
 */
export function signPlaybackUrl(
  url: string,
  secret: string,
  opts: { expiresInSeconds: number; nowSeconds?: number },
): Promise<{ url: string; token: string; expiresAt: Date }> {
  return signWithContract(url, secret, opts).then((signed) => ({
    url: signed.url,
    token: signed.token,
    expiresAt: new Date(signed.expiresAt * 1000),
  }));
}
