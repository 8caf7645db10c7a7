/**
 * Where a job may call back to. Outside local stacks only https, and never a host that names
 * this network (loopback, private, link-local, CGNAT, unspecified), so a client cannot turn
 * callbacks into requests against internal services.
 */

export type CallbackUrlCheck = { ok: true; url: string } | { ok: false; reason: string };

const ipv4 = (host: string): number[] | null => {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(host);
  if (!m) return null;
  const octets = m.slice(1).map(Number);
  return octets.every((o) => o <= 255) ? octets : null;
};

function isInternalIpv4([a, b]: number[]): boolean {
  if (a === undefined || b === undefined) return false;
  return (
    a === 0 ||
    a === 10 ||
    a === 127 ||
    (a === 100 && b >= 64 && b <= 127) ||
    (a === 169 && b === 254) ||
    (a === 172 && b >= 16 && b <= 31) ||
    (a === 192 && b === 168) ||
    (a === 198 && (b === 18 || b === 19)) ||
    a >= 224
  );
}

function isInternalIpv6(host: string): boolean {
  const addr = host.replace(/^\[|\]$/g, "").toLowerCase();
  if (addr === "::" || addr === "::1") return true;
  // IPv4-mapped (::ffff:a.b.c.d, which URL normalizes to ::ffff:xxxx:xxxx).
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(addr);
  if (mapped?.[1] && mapped[2]) {
    const hi = Number.parseInt(mapped[1], 16);
    return isInternalIpv4([hi >> 8, hi & 0xff]);
  }
  const first = Number.parseInt(addr.split(":")[0] || "0", 16);
  return (first & 0xfe00) === 0xfc00 || (first & 0xffc0) === 0xfe80 || (first & 0xff00) === 0xff00;
}

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
  const host = url.hostname.toLowerCase().replace(/\.$/, "");
  if (host === "localhost" || host.endsWith(".localhost"))
    return { ok: false, reason: "callbackUrl must not point at localhost" };
  const v4 = ipv4(host);
  if ((v4 && isInternalIpv4(v4)) || (host.startsWith("[") && isInternalIpv6(host)))
    return { ok: false, reason: "callbackUrl must not point at a private, loopback or link-local address" };
  return { ok: true, url: url.toString() };
}
