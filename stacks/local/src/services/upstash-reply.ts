/**
 * How the Upstash REST API renders a Redis reply: by default as JSON (integers as numbers, nil as
 * null, arrays flat as Redis sends them, and with `Upstash-Encoding: base64` every string base64'd,
 * binary-safe, except a top-level "OK", which Upstash and @upstash/redis' decoder leave as is), or
 * as RESP2 bytes when `Upstash-Response-Format: resp2` asks for them.
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

/**
 * The same reply as RESP2 bytes, for `Upstash-Response-Format: resp2`. ioredis does not say
 * whether a string was a status or a bulk reply; a top-level `OK` (what every write answers) is
 * sent as the status `+OK`, every other string as a bulk string.
 */
export function encodeResp2(reply: RedisReply): Buffer {
  if (Buffer.isBuffer(reply) && reply.length === 2 && reply.toString() === "OK") return Buffer.from("+OK\r\n");
  return Buffer.concat(resp2Parts(reply));
}

function resp2Parts(reply: RedisReply): Buffer[] {
  if (reply === null || reply === undefined) return [Buffer.from("$-1\r\n")];
  if (typeof reply === "number") return [Buffer.from(`:${reply}\r\n`)];
  if (reply instanceof Error) return [Buffer.from(`-${reply.message.replace(/\r?\n/g, " ")}\r\n`)];
  if (Array.isArray(reply)) return [Buffer.from(`*${reply.length}\r\n`), ...reply.flatMap(resp2Parts)];
  const bytes = Buffer.isBuffer(reply) ? reply : Buffer.from(reply);
  return [Buffer.from(`$${bytes.length}\r\n`), bytes, Buffer.from("\r\n")];
}
