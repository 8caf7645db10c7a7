/**
 * Where a job may call back to. Outside local stacks only https, and never a host that names
 * this network (loopback, private, link-local, CGNAT, unspecified), so a client cannot turn
 * callbacks into requests against internal services (rules: contract/addresses.ts).
 */
import { checkClientUrl } from "../contract/addresses.ts";

export type CallbackUrlCheck = { ok: true; url: string } | { ok: false; reason: string };

export function checkCallbackUrl(raw: string, { allowInsecure }: { allowInsecure: boolean }): CallbackUrlCheck {
  const check = checkClientUrl(raw, {
    field: "callbackUrl",
    allowHttp: allowInsecure,
    allowLoopback: allowInsecure,
    allowInternal: allowInsecure,
  });
  return check.ok ? { ok: true, url: check.url.toString() } : check;
}
