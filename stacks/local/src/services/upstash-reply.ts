/**
 * How the Upstash REST API renders a Redis reply as JSON: integers as numbers, nil as null,
 * arrays flat as Redis sends them, and with `Upstash-Encoding: base64` every string base64'd
 * (binary-safe) — except a top-level "OK", which Upstash (and @upstash/redis' decoder) leave as is.
 */

export type RedisReply = Buffer | string | number | null | undefined | Error | RedisReply[];
export type RestValue = string | number | null | RestValue[];

export function encodeReply(reply: RedisReply, base64: boolean): RestValue {
  if (Buffer.isBuffer(reply) && base64 && reply.length === 2 && reply.toString() === "OK") return "OK";
  return encodeNested(reply, base64);
}

function encodeNested(reply: RedisReply, base64: boolean): RestValue {
  if (reply === null || reply === undefined) return null;
  if (typeof reply === "number") return reply;
  if (Array.isArray(reply)) return reply.map((item) => encodeNested(item, base64));
  // A Lua script may return an error reply nested in an array; Upstash renders it as its text.
  const bytes =
    reply instanceof Error ? Buffer.from(reply.message) : Buffer.isBuffer(reply) ? reply : Buffer.from(reply);
  return base64 ? bytes.toString("base64") : bytes.toString("utf8");
}
