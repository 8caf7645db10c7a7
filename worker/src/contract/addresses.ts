/**
 * Which network addresses a URL from a client may lead to. Callbacks (the worker) and source URLs
 * (the worker when a job is created, the machine after every DNS resolution and redirect) use the
 * same classification, so nothing a client names can reach loopback, private, link-local (cloud
 * metadata), CGNAT or multicast addresses. No zod: machines and the worker share it as is.
 */

export type AddressKind = "public" | "loopback" | "internal";

/** The four octets of a dotted-quad IPv4 literal (as `URL` normalizes it), or null. */
export function ipv4Octets(host: string): number[] | null {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(host);
  if (!m) return null;
  const octets = m.slice(1).map(Number);
  return octets.every((o) => o <= 255) ? octets : null;
}

function ipv4Kind([a, b]: number[]): AddressKind {
  if (a === undefined || b === undefined) return "internal";
  if (a === 127) return "loopback";
  const internal =
    a === 0 ||
    a === 10 ||
    (a === 100 && b >= 64 && b <= 127) ||
    (a === 169 && b === 254) ||
    (a === 172 && b >= 16 && b <= 31) ||
    (a === 192 && b === 168) ||
    (a === 198 && (b === 18 || b === 19)) ||
    a >= 224;
  return internal ? "internal" : "public";
}

function ipv6Kind(host: string): AddressKind {
  const addr = host.replace(/^\[|\]$/g, "").toLowerCase();
  if (addr === "::1") return "loopback";
  if (addr === "::") return "internal";
  // IPv4-mapped, as URL normalizes it (::ffff:7f00:1) or as DNS answers it (::ffff:127.0.0.1).
  const dotted = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/.exec(addr);
  if (dotted?.[1]) return ipv4Kind(ipv4Octets(dotted[1]) ?? []);
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(addr);
  if (mapped?.[1] && mapped[2]) {
    const hi = Number.parseInt(mapped[1], 16);
    const lo = Number.parseInt(mapped[2], 16);
    return ipv4Kind([hi >> 8, hi & 0xff, lo >> 8, lo & 0xff]);
  }
  const first = Number.parseInt(addr.split(":")[0] || "0", 16);
  const internal = (first & 0xfe00) === 0xfc00 || (first & 0xffc0) === 0xfe80 || (first & 0xff00) === 0xff00;
  return internal ? "internal" : "public";
}

/** What an IP literal (v4 dotted quad, or v6 with or without brackets) is; null when it is not one. */
export function addressKind(address: string): AddressKind | null {
  const v4 = ipv4Octets(address);
  if (v4) return ipv4Kind(v4);
  if (address.includes(":")) return ipv6Kind(address);
  return null;
}

/** A hostname that names this machine whatever DNS says. */
export const isLocalhostName = (host: string): boolean => {
  const name = host.toLowerCase().replace(/\.$/, "");
  return name === "localhost" || name.endsWith(".localhost");
};

export type UrlCheck = { ok: true; url: URL } | { ok: false; reason: string };

/** What a URL a client gives may be; `field` names it in the reasons. */
export interface ClientUrlRules {
  field: string;
  /** `http:` as well as `https:`. */
  allowHttp: boolean;
  allowLoopback: boolean;
  /** Private, link-local, CGNAT and multicast addresses too (only callbacks of the local stack). */
  allowInternal: boolean;
}

/**
 * A URL a client gave, as far as it can be judged without DNS: parseable, no credentials, an
 * allowed scheme, and not a host that names loopback or an internal address unless allowed.
 */
export function checkClientUrl(raw: string, rules: ClientUrlRules): UrlCheck {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return { ok: false, reason: `${rules.field} is not a URL` };
  }
  if (url.username || url.password) return { ok: false, reason: `${rules.field} must not carry credentials` };
  const schemes = rules.allowHttp ? ["https:", "http:"] : ["https:"];
  if (!schemes.includes(url.protocol))
    return { ok: false, reason: `${rules.field} must use ${rules.allowHttp ? "http(s)" : "https"}` };
  const kind = isLocalhostName(url.hostname) ? "loopback" : addressKind(url.hostname);
  if ((kind === "internal" && !rules.allowInternal) || (kind === "loopback" && !rules.allowLoopback))
    return { ok: false, reason: `${rules.field} must not point at a private, loopback or link-local address` };
  return { ok: true, url };
}

/**
 * A source URL: `https` (or `http` where loopback sources are allowed, the local stack), never an
 * internal address. The machine checks every resolved address again, on every hop.
 */
export const checkSourceUrl = (raw: string, { allowLoopback }: { allowLoopback: boolean }): UrlCheck =>
  checkClientUrl(raw, { field: "url", allowHttp: allowLoopback, allowLoopback, allowInternal: false });

/**
 * What a machine needs to fetch a job's source from a URL, fixed when the job was accepted (the
 * stack's MAX_UPLOAD_BYTES and ALLOW_LOOPBACK_SOURCE_URLS then) and handed over with the claim.
 */
export interface SourceFetchPolicy {
  url: string;
  maxBytes: number;
  allowLoopback: boolean;
}
