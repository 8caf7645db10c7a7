/**
 * Signed playback: a job created with `playback: "signed"` is published to a bucket with no public
 * read access and served by the worker at `/v1/playback/<jobId>/<path in the package>` only with a
 * valid `?token=`. A token is `<expires, unix seconds>.<base64url HMAC-SHA256("<jobId>.<expires>",
 * PLAYBACK_SIGNING_SECRET)>`: it opens every file of one job until it expires, so the playlists the
 * worker serves carry the same token on every URI they list. WebCrypto only and no zod, so the SDK
 * signs URLs offline with exactly this code, in Node and browsers alike.
 */

/** The policies a job may be created with (`PlaybackPolicy` in job.ts is the schema). */
export const playbackPolicies = ["public", "signed"] as const;
type Policy = (typeof playbackPolicies)[number];

/** Where the worker serves signed packages; the job id and the path inside the package follow. */
export const PLAYBACK_PATH = "/v1/playback";
export const PLAYBACK_TOKEN_PARAM = "token";

/** Longest a token may live: a week, like a presigned S3 URL. */
export const MAX_PLAYBACK_TOKEN_SECONDS = 7 * 24 * 3600;

/**
 * The bucket (by its binding name) a job's package is published to: the public output bucket, or
 * for signed playback the input bucket, which has no public access (R2 serves every object of a
 * public bucket, so a private package cannot share it).
 */
export const packageBucketVar = (policy: Policy): "OUTPUT_BUCKET" | "INPUT_BUCKET" =>
  policy === "signed" ? "INPUT_BUCKET" : "OUTPUT_BUCKET";

const encoder = new TextEncoder();

const base64url = (bytes: ArrayBuffer): string =>
  btoa(String.fromCharCode(...new Uint8Array(bytes)))
    .replaceAll("+", "-")
    .replaceAll("/", "_")
    .replace(/=+$/, "");

const fromBase64url = (text: string): Uint8Array<ArrayBuffer> | null => {
  if (!/^[A-Za-z0-9_-]+$/.test(text)) return null;
  const binary = atob(text.replaceAll("-", "+").replaceAll("_", "/"));
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
};

const hmacKey = (secret: string) =>
  crypto.subtle.importKey("raw", encoder.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign", "verify"]);

/** A token for every file of `jobId`, valid until `expiresAt` (unix seconds). */
export async function signPlaybackToken(secret: string, jobId: string, expiresAt: number): Promise<string> {
  const exp = Math.floor(expiresAt);
  const mac = await crypto.subtle.sign("HMAC", await hmacKey(secret), encoder.encode(`${jobId}.${exp}`));
  return `${exp}.${base64url(mac)}`;
}

export type PlaybackTokenCheck =
  | { ok: true; expiresAt: number }
  | { ok: false; reason: "missing" | "malformed" | "expired" | "mismatch" };

/** Checks a token for `jobId`; the MAC is compared in constant time by `crypto.subtle.verify`. */
export async function verifyPlaybackToken(
  secret: string,
  jobId: string,
  token: string | null | undefined,
  nowSeconds = Math.floor(Date.now() / 1000),
): Promise<PlaybackTokenCheck> {
  if (!token) return { ok: false, reason: "missing" };
  const match = /^(\d{1,12})\.([A-Za-z0-9_-]{43})$/.exec(token);
  const mac = match?.[2] ? fromBase64url(match[2]) : null;
  // 43 base64url characters carry 258 bits for the MAC's 256: the last one's two spare bits would
  // let four spellings of one token pass. Only the spelling signPlaybackToken writes is a token.
  if (!match || !mac || mac.length !== 32 || base64url(mac.buffer) !== match[2]) {
    return { ok: false, reason: "malformed" };
  }
  const expiresAt = Number(match[1]);
  if (expiresAt <= nowSeconds) return { ok: false, reason: "expired" };
  const valid = await crypto.subtle.verify("HMAC", await hmacKey(secret), mac, encoder.encode(`${jobId}.${expiresAt}`));
  return valid ? { ok: true, expiresAt } : { ok: false, reason: "mismatch" };
}

/**
 * The worker URL of a file of a signed job's package: `key` is its object key
 * (`outputs/<jobId>/<attempt>/…`), `controlPlaneUrl` the worker's public URL. Without a token.
 */
export function playbackUrl(controlPlaneUrl: string, key: string): string {
  const path = key.startsWith("outputs/") ? key.slice("outputs/".length) : key;
  return `${controlPlaneUrl.replace(/\/+$/, "")}${PLAYBACK_PATH}/${path.split("/").map(encodeURIComponent).join("/")}`;
}

/** The job a playback URL (or path) belongs to, or null when it is not one. */
export function jobIdOfPlaybackUrl(url: string): string | null {
  const path = new URL(url, "http://x").pathname;
  if (!path.startsWith(`${PLAYBACK_PATH}/`)) return null;
  const jobId = decodeURIComponent(path.slice(PLAYBACK_PATH.length + 1).split("/")[0] ?? "");
  return jobId === "" ? null : jobId;
}

/**
 * Adds a token to a playback URL (as the job record or `playbackUrl` gives it), valid for
 * `expiresInSeconds` from `nowSeconds`: what `POST /v1/jobs/{id}/playback-tokens` answers, and what
 * an app holding PLAYBACK_SIGNING_SECRET can compute itself without calling the API.
 */
export async function signPlaybackUrl(
  url: string,
  secret: string,
  { expiresInSeconds, nowSeconds = Math.floor(Date.now() / 1000) }: { expiresInSeconds: number; nowSeconds?: number },
): Promise<{ url: string; token: string; expiresAt: number }> {
  const jobId = jobIdOfPlaybackUrl(url);
  if (!jobId) throw new TypeError(`not a playback URL: ${url}`);
  const expiresAt = nowSeconds + Math.max(1, Math.min(Math.floor(expiresInSeconds), MAX_PLAYBACK_TOKEN_SECONDS));
  const token = await signPlaybackToken(secret, jobId, expiresAt);
  const signed = new URL(url);
  signed.searchParams.set(PLAYBACK_TOKEN_PARAM, token);
  return { url: signed.toString(), token, expiresAt };
}

/**
 * A playlist (HLS .m3u8, or the thumbnails' WebVTT) with `?token=` added to every URI it lists,
 * so a player resolving them against the playlist's URL sends the token with each request.
 */
export function addTokenToPlaylist(text: string, kind: "m3u8" | "vtt", token: string): string {
  const withToken = (uri: string) => {
    if (/^[a-z][a-z0-9+.-]*:/i.test(uri)) return uri; // absolute: another host's business
    const hash = uri.indexOf("#");
    const [path, fragment] = hash < 0 ? [uri, ""] : [uri.slice(0, hash), uri.slice(hash)];
    return `${path}${path.includes("?") ? "&" : "?"}${PLAYBACK_TOKEN_PARAM}=${token}${fragment}`;
  };
  return text
    .split("\n")
    .map((line) => {
      const trimmed = line.trim();
      if (kind === "m3u8") {
        if (trimmed === "") return line;
        if (trimmed.startsWith("#"))
          return line.replace(/URI="([^"]*)"/g, (_, uri: string) => `URI="${withToken(uri)}"`);
        return withToken(trimmed);
      }
      // WebVTT cue payloads of the thumbnails track are image URIs (`sprite.jpg#xywh=…`).
      return /^[^\s:]+\.(jpe?g|png|webp)(#.*)?$/i.test(trimmed) ? withToken(trimmed) : line;
    })
    .join("\n");
}
