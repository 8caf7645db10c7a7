/**
 * Bucket CORS as R2 evaluates it (S3's `CORSRule` semantics): a request whose `Origin` matches no
 * rule gets no CORS headers at all, so the browser refuses it exactly as it would in the cloud; a
 * preflight for an origin, method or header no rule allows is 403. Rules are matched in order and
 * the first that fits answers. Origins match exactly (R2: "Origin values must match exactly") or by
 * `*`; headers case-insensitively, `*` allowing any.
 * https://developers.cloudflare.com/r2/buckets/cors/ ·
 * https://docs.aws.amazon.com/AmazonS3/latest/userguide/cors.html#cors-eval-criteria
 */
import type { IncomingMessage } from "node:http";
import type { BucketCorsRule } from "@tcoder/worker/bindings";
import { S3Error } from "./errors.ts";

/** A bucket's rule with the origins its stack allows. */
export interface CorsRule extends BucketCorsRule {
  origins: readonly string[];
}

/** Bucket name → its rules; a bucket without rules answers no cross-origin request. */
export type CorsConfig = Record<string, readonly CorsRule[]>;

const vary = "Origin, Access-Control-Request-Headers, Access-Control-Request-Method";

/** S3's answer to a preflight no rule allows (also R2's status). */
const corsForbidden = (reason: string) => new S3Error(403, "AccessForbidden", `CORSResponse: ${reason}`);

/**
 * The headers for an actual (non-preflight) request: the first rule matching its origin and
 * method, or none. Added to error responses too, so a page can read why the store refused it.
 */
export function corsHeaders(rules: readonly CorsRule[] | undefined, req: IncomingMessage): Record<string, string> {
  const origin = req.headers.origin;
  if (origin === undefined || !rules) return {};
  const rule = rules.find((r) => allowsOrigin(r, origin) && allowsMethod(r, req.method ?? "GET"));
  return rule ? ruleHeaders(rule, origin) : {};
}

/** The answer to an `OPTIONS` preflight: the headers of the rule allowing it, or the S3 error. */
export function preflight(rules: readonly CorsRule[] | undefined, req: IncomingMessage): Record<string, string> {
  const origin = req.headers.origin;
  const method = req.headers["access-control-request-method"];
  if (origin === undefined || method === undefined) {
    throw new S3Error(400, "BadRequest", "Insufficient information. Origin request header needed.");
  }
  if (!rules || rules.length === 0) throw corsForbidden("CORS is not enabled for this bucket.");
  const requested = String(req.headers["access-control-request-headers"] ?? "")
    .split(",")
    .map((h) => h.trim().toLowerCase())
    .filter((h) => h !== "");
  const rule = rules.find(
    (r) => allowsOrigin(r, origin) && allowsMethod(r, method) && requested.every((h) => allowsHeader(r, h)),
  );
  if (!rule) {
    throw corsForbidden(
      "This CORS request is not allowed. This is usually because the evaluation of Origin, request method / Access-Control-Request-Method or Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.",
    );
  }
  return {
    ...ruleHeaders(rule, origin),
    ...(requested.length > 0 ? { "access-control-allow-headers": requested.join(", ") } : {}),
  };
}

function ruleHeaders(rule: CorsRule, origin: string): Record<string, string> {
  return {
    "access-control-allow-origin": rule.origins.includes("*") ? "*" : origin,
    "access-control-allow-methods": rule.methods.join(", "),
    ...(rule.exposeHeaders.length > 0 ? { "access-control-expose-headers": rule.exposeHeaders.join(", ") } : {}),
    "access-control-max-age": String(rule.maxAgeSeconds),
    vary,
  };
}

const allowsOrigin = (rule: CorsRule, origin: string) => rule.origins.some((o) => o === "*" || o === origin);
const allowsMethod = (rule: CorsRule, method: string) => (rule.methods as readonly string[]).includes(method);
const allowsHeader = (rule: CorsRule, header: string) =>
  rule.headers.some((allowed) => allowed === "*" || allowed.toLowerCase() === header);
