/**
 * Stripe-style signatures (`t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`), used for
 * machine events (machines → control plane) and client callbacks (control plane → clients).
 * WebCrypto only, so the same code runs in workerd, Node 20 and browsers; verification uses
 * `crypto.subtle.verify`, which compares in constant time.
 */
export const SIGNATURE_HEADER = "tcoder-signature";
export const DEFAULT_TOLERANCE_SECONDS = 300;

const encoder = new TextEncoder();

const importKey = (secret: string) =>
  crypto.subtle.importKey("raw", encoder.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign", "verify"]);

const toHex = (bytes: ArrayBuffer) => [...new Uint8Array(bytes)].map((b) => b.toString(16).padStart(2, "0")).join("");

const fromHex = (hex: string): Uint8Array<ArrayBuffer> | null => {
  if (hex.length % 2 !== 0 || !/^[0-9a-f]*$/i.test(hex)) return null;
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = Number.parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return out;
};

export async function signPayload(
  secret: string,
  rawBody: string,
  nowSeconds = Math.floor(Date.now() / 1000),
): Promise<string> {
  const key = await importKey(secret);
  const mac = await crypto.subtle.sign("HMAC", key, encoder.encode(`${nowSeconds}.${rawBody}`));
  return `t=${nowSeconds},v1=${toHex(mac)}`;
}

export type SignatureCheck =
  | { ok: true; timestamp: number }
  | { ok: false; reason: "malformed" | "stale" | "mismatch" };

export async function verifySignature(
  secret: string,
  rawBody: string,
  header: string | null | undefined,
  { toleranceSeconds = DEFAULT_TOLERANCE_SECONDS, nowSeconds = Math.floor(Date.now() / 1000) } = {},
): Promise<SignatureCheck> {
  if (!header) return { ok: false, reason: "malformed" };
  const parts = new Map<string, string[]>();
  for (const part of header.split(",")) {
    const eq = part.indexOf("=");
    if (eq <= 0) continue;
    const name = part.slice(0, eq).trim();
    parts.set(name, [...(parts.get(name) ?? []), part.slice(eq + 1).trim()]);
  }
  const t = parts.get("t")?.[0];
  const candidates = parts.get("v1") ?? [];
  if (!t || !/^\d+$/.test(t) || candidates.length === 0) return { ok: false, reason: "malformed" };
  const timestamp = Number(t);
  if (Math.abs(nowSeconds - timestamp) > toleranceSeconds) return { ok: false, reason: "stale" };
  const key = await importKey(secret);
  const data = encoder.encode(`${t}.${rawBody}`);
  for (const candidate of candidates) {
    const mac = fromHex(candidate);
    if (mac && mac.length === 32 && (await crypto.subtle.verify("HMAC", key, mac, data)))
      return { ok: true, timestamp };
  }
  return { ok: false, reason: "mismatch" };
}
