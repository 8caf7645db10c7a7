/**
 * Where a job may call back to. Outside local stacks only https, and never a host that names
 * this network (loopback, private, link-local, CGNAT, unspecified), so a client cannot turn
 * callbacks into requests against internal services (classification: contract/addresses.ts).
 */
import { addressKind, isLocalhostName } from "../contract/addresses.ts";

export type CallbackUrlCheck = { ok: true; url: string } | { ok: false; reason: string };

export function checkCallbackUrl(raw: string, { allowInsecure }: { allowInsecure: boolean }): CallbackUrlCheck {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return { ok: false, reason: "callbackUrl is not a URL" };
  }
  if (url.username || url.password) return { ok: false, reason: "callbackUrl must not carry credentials" };
  if (allowInsecure) {
    if (url.protocol !== "https:" && url.protocol !== "http:")
      return { ok: false, reason: "callbackUrl must be http(s)" };
    return { ok: true, url: url.toString() };
  }
  if (url.protocol !== "https:") return { ok: false, reason: "callbackUrl must use https" };
  if (isLocalhostName(url.hostname)) return { ok: false, reason: "callbackUrl must not point at localhost" };
  const kind = addressKind(url.hostname);
  if (kind === "internal" || kind === "loopback")
    return { ok: false, reason: "callbackUrl must not point at a private, loopback or link-local address" };
  return { ok: true, url: url.toString() };
}
