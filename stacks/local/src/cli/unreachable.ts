/**
 * A request that got no HTTP answer, said as a sentence: which address, and why (connection
 * refused, DNS, TLS, timeout). Every request the CLI makes goes through `fetchOrExplain`, so
 * `status`, `jobs`, `cancel` and `transcode` all word the same failure the same way; undici's own
 * `TypeError: fetch failed` names neither.
 */

/** No answer from `address` (`what` it is, for the reader); `reason` is why. The original error stays as `cause`. */
export class UnreachableError extends Error {
  override readonly name = "UnreachableError";
  constructor(
    readonly address: string,
    readonly reason: string,
    opts: { what?: string; cause: unknown },
  ) {
    super(`cannot reach ${opts.what ? `${opts.what} at ` : ""}${address}: ${reason}`, { cause: opts.cause });
  }
}

/**
 * `fetch`, but a request that gets no answer rejects with an UnreachableError naming `what` was
 * asked and its address. Only the origin is named: presigned URLs carry their signature in the query.
 */
export async function fetchOrExplain(url: URL | string, init: RequestInit = {}, what?: string): Promise<Response> {
  const target = new URL(url);
  // When a server closes the connection at one particular moment, Node 20's fetch neither
  // resolves nor rejects and holds nothing that keeps the process alive: Node would exit 0 with no
  // word. The event loop running dry while the request is pending means exactly that, so it ends
  // the request as the socket error it is.
  let onDrained = () => {};
  const drained = new Promise<never>((_, reject) => {
    onDrained = () => reject(new TypeError("fetch failed", { cause: { code: "UND_ERR_SOCKET" } }));
    process.once("beforeExit", onDrained);
  });
  try {
    return await Promise.race([fetch(target, init), drained]);
  } catch (error) {
    throw new UnreachableError(target.origin, whyNoAnswer(error, target), { cause: error, ...(what ? { what } : {}) });
  } finally {
    process.off("beforeExit", onDrained);
  }
}

interface SystemError {
  name?: string;
  code?: string;
  message?: string;
  /** OpenSSL's short reason (`wrong version number`), set on TLS errors. */
  reason?: string;
  errors?: SystemError[];
}

/**
 * undici rejects with `TypeError: fetch failed` and puts what happened in `cause` (a Node system
 * error, an undici error or an OpenSSL one); an abort signal rejects with its reason itself.
 */
export function whyNoAnswer(error: unknown, target: URL): string {
  const failure = (error ?? {}) as SystemError;
  if (failure.name === "TimeoutError") return "no answer before the time limit (timed out)";
  if (failure.name === "AbortError") return "the request was aborted (timed out or interrupted) before an answer came";
  const cause = (failure as { cause?: SystemError }).cause ?? failure;
  // Several addresses tried (localhost as ::1 and 127.0.0.1): an AggregateError whose parts say why.
  const code = cause.code ?? cause.errors?.[0]?.code ?? "";
  const port = target.port || (target.protocol === "https:" ? "443" : "80");
  switch (code) {
    case "ECONNREFUSED":
      return `connection refused (nothing listens on port ${port} of ${target.hostname})`;
    case "ENOTFOUND":
      return `DNS lookup failed: no address found for ${target.hostname}`;
    case "EAI_AGAIN":
      return `DNS lookup failed for ${target.hostname} (the resolver did not answer; is the network up?)`;
    case "ECONNRESET":
    case "EPIPE":
    case "UND_ERR_SOCKET":
      return "the connection was closed before an answer came";
    case "EHOSTUNREACH":
    case "ENETUNREACH":
      return `no route to ${target.hostname}`;
    case "ETIMEDOUT":
    case "UND_ERR_CONNECT_TIMEOUT":
      return "timed out connecting";
    case "UND_ERR_HEADERS_TIMEOUT":
    case "UND_ERR_BODY_TIMEOUT":
      return "connected, but timed out waiting for the answer";
    case "ERR_SSL_WRONG_VERSION_NUMBER":
      return "TLS error: the server does not speak TLS on that port (an http:// address?)";
  }
  if (isTlsCode(code)) return `TLS error: ${cause.reason ?? cause.message ?? code} (${code})`;
  // The Fetch standard's port blocklist (9, 25, 6000, …): undici refuses before connecting.
  if (cause.message === "bad port")
    return `port ${port} is on the Fetch standard's list of blocked ports, so no request is sent to it`;
  const detail = cause.message ?? String(error);
  return code && !detail.includes(code) ? `${detail} (${code})` : detail;
}

/** Certificate verification codes (`CERT_HAS_EXPIRED`, `DEPTH_ZERO_SELF_SIGNED_CERT`, …) and TLS/SSL errors. */
const isTlsCode = (code: string) =>
  /^(ERR_TLS_|ERR_SSL_|CERT_|UNABLE_TO_)|CERT|SELF_SIGNED|^HOSTNAME_MISMATCH$|^INVALID_CA$/.test(code);
