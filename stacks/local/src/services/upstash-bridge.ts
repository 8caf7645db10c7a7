/**
 * The Upstash Redis REST protocol over a real redis-server, so the worker's `@upstash/redis`
 * client runs unchanged against the local cloud. What @upstash/redis 1.39 sends (pkg/http.ts):
 * POST with `Authorization: Bearer <token>`, a JSON command array to `/`, an array of them to
 * `/pipeline` or `/multi-exec`, and `Upstash-Encoding: base64` asking for base64 strings. The rest
 * of the documented REST API (https://upstash.com/docs/redis/features/restapi) answers as Upstash
 * does: the URL form `/set/key/value` with a POST body as the value and query parameters as the
 * arguments after it, `Upstash-Response-Format: resp2`, 405 for other methods; and what Upstash
 * refuses is refused here: a request over 10 MB (troubleshooting/max_request_size_exceeded) and a
 * key over 32 KB (troubleshooting/max_key_size_exceeded), with Upstash's messages.
 */
import { timingSafeEqual } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { Redis, ReplyError } from "ioredis";
import { z } from "zod";
import { readBody, sendBody, serveLocal } from "./http-service.ts";
import { encodeReply, encodeResp2, type RedisReply } from "./upstash-reply.ts";

export interface UpstashBridgeOptions {
  /** `redis://127.0.0.1:<port>` of the real server. */
  redisUrl: string;
  /** The REST token clients must present. */
  token: string;
  port?: number;
}

export interface UpstashBridge {
  /** `http://127.0.0.1:<port>`: the `url` for `new Redis({ url, token })`. */
  url: string;
  token: string;
  /** Redis commands executed so far (a pipeline of n counts n; MULTI/EXEC framing is not counted). */
  commandCount(): number;
  stop(): Promise<void>;
}

/** Upstash's "10MB" on Free and Pay-as-you-go databases, read as MiB. */
export const MAX_REQUEST_BYTES = 10 * 1024 * 1024;
/** Upstash's hard-coded "32Kb" key limit, read as KiB. */
export const MAX_KEY_BYTES = 32 * 1024;
const allowedMethods = new Set(["HEAD", "GET", "POST", "PUT"]);
const responseFormats = ["json", "resp2"] as const;
type ResponseFormat = (typeof responseFormats)[number];

const commandSchema = z.array(z.union([z.string(), z.number(), z.boolean()])).min(1);
const batchSchema = z.array(commandSchema).min(1);
type RedisArgs = [name: string, ...args: string[]];

/**
 * Commands that would take over or break a shared connection (pub/sub, connection state,
 * client-side transactions); the REST API has its own endpoints for those needs.
 */
const refusedCommands = new Set([
  "subscribe",
  "psubscribe",
  "ssubscribe",
  "unsubscribe",
  "punsubscribe",
  "sunsubscribe",
  "monitor",
  "multi",
  "exec",
  "discard",
  "watch",
  "unwatch",
  "select",
  "quit",
  "reset",
  "hello",
  "auth",
  "client",
]);

// ioredis types ReplyError as `any`; it is the class of the errors Redis itself replied with.
const RedisReplyError = ReplyError as new (message: string) => Error;
type RedisReplyError = Error & { previousErrors?: Error[] };
const isReplyError = (error: unknown): error is RedisReplyError => error instanceof RedisReplyError;

class BridgeError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** One command's outcome: Redis' reply, or the error Redis (or the REST layer) answered. */
type Outcome = { reply: RedisReply } | { error: string };

export async function startUpstashBridge(opts: UpstashBridgeOptions): Promise<UpstashBridge> {
  const connect = () =>
    new Redis(opts.redisUrl, {
      // A command whose reply was lost with the connection may have run: fail it rather than run it twice.
      autoResendUnfulfilledCommands: false,
      lazyConnect: true,
      // Upstash speaks RESP2 shapes: flat arrays for maps, doubles as strings.
      protocol: 2,
    });
  const shared = connect();
  shared.on("error", () => {});
  await shared.connect();
  const transactions = connectionPool(connect);
  let executed = 0;

  /** Upstash's refusal of a command naming a key over 32 KB; Redis itself says which arguments are keys. */
  const oversizedKey = async (command: RedisArgs): Promise<string | null> => {
    if (!command.some((arg) => Buffer.byteLength(arg) > MAX_KEY_BYTES)) return null;
    const keys = (await shared.callBuffer("COMMAND", "GETKEYS", ...command).catch(() => [])) as Buffer[];
    const largest = Math.max(0, ...keys.map((key) => key.length));
    return largest > MAX_KEY_BYTES
      ? `ERR max key size exceeded. Limit: ${MAX_KEY_BYTES} bytes, Actual: ${largest} bytes`
      : null;
  };

  const runOne = async (command: RedisArgs): Promise<Outcome> => {
    const refused = await oversizedKey(command);
    if (refused) return { error: refused };
    executed += 1;
    const [name, ...args] = command;
    return shared.callBuffer(name, ...args).then(
      (reply) => ({ reply: reply as RedisReply }),
      (error: unknown) => perCommand(error as Error, null),
    );
  };

  // A pipeline runs every command it can: one naming an oversized key answers its error in its slot.
  const runPipeline = async (commands: RedisArgs[]): Promise<Outcome[]> => {
    const refusals = await Promise.all(commands.map(oversizedKey));
    const runnable = commands.filter((_, i) => refusals[i] === null);
    const pipeline = shared.pipeline();
    for (const [name, ...args] of runnable) pipeline.callBuffer(name, ...args);
    executed += runnable.length;
    const replies = runnable.length > 0 ? ((await pipeline.exec()) ?? []) : [];
    let next = 0;
    return refusals.map((refused) => {
      if (refused) return { error: refused };
      const [error, reply] = replies[next++] ?? [null, null];
      return perCommand(error, reply as RedisReply);
    });
  };

  // MULTI/EXEC on a connection of its own, so two concurrent transactions never interleave. A
  // command Upstash refuses discards the whole transaction, as its docs say of oversized ones.
  const runTransaction = async (commands: RedisArgs[]): Promise<Outcome[]> => {
    for (const refused of await Promise.all(commands.map(oversizedKey))) {
      if (refused) throw new BridgeError(400, refused);
    }
    const connection = await transactions.acquire();
    try {
      const transaction = connection.multi();
      for (const [name, ...args] of commands) transaction.callBuffer(name, ...args);
      executed += commands.length;
      const replies = await transaction.exec().catch((error: unknown) => {
        if (isReplyError(error)) throw new BridgeError(400, transactionAbortMessage(error));
        throw error;
      });
      if (replies === null) throw new BridgeError(400, "EXECABORT Transaction aborted");
      return replies.map(([error, reply]) => perCommand(error, reply as RedisReply));
    } finally {
      transactions.release(connection);
    }
  };

  const handle = async (req: IncomingMessage, res: ServerResponse, format: ResponseFormat) => {
    if (!allowedMethods.has(req.method ?? "GET")) throw new BridgeError(405, "Method Not Allowed");
    if (!isAuthorized(req, opts.token)) throw new BridgeError(401, "Unauthorized");
    const url = new URL(req.url ?? "/", "http://bridge");
    const base64 = String(req.headers["upstash-encoding"] ?? "").toLowerCase() === "base64";
    if (base64 && format === "resp2") {
      throw new BridgeError(400, "ERR Upstash-Encoding: base64 cannot be used with Upstash-Response-Format: resp2");
    }
    const body = (
      await readBody(req, MAX_REQUEST_BYTES, () => new BridgeError(400, "ERR max request size exceeded"))
    ).toString("utf8");
    const path = url.pathname.replace(/\/+$/, "");

    if (path === "/pipeline" || path === "/multi-exec") {
      const commands = parseJson(body, batchSchema).map(toRedisArgs);
      if (path === "/multi-exec") return sendJson(res, 200, (await runTransaction(commands)).map(toJson(base64)));
      const outcomes = await runPipeline(commands);
      if (format === "resp2") return sendResp2(res, 200, Buffer.concat(outcomes.map(toResp2)));
      return sendJson(res, 200, outcomes.map(toJson(base64)));
    }
    const command =
      path === "" ? toRedisArgs(parseJson(body, commandSchema)) : pathCommand(path, body, url.searchParams);
    const outcome = await runOne(command);
    const status = "error" in outcome ? 400 : 200;
    if (format === "resp2") return sendResp2(res, status, toResp2(outcome));
    return sendJson(res, status, toJson(base64)(outcome));
  };

  const service = await serveLocal((req, res) => {
    let format: ResponseFormat;
    try {
      format = responseFormat(req);
    } catch (error) {
      req.resume();
      return sendFailure(res, error, "json");
    }
    // Transactions answer in JSON whatever the format asked (Upstash: "not applicable to /multi-exec").
    if (new URL(req.url ?? "/", "http://bridge").pathname.replace(/\/+$/, "") === "/multi-exec") format = "json";
    handle(req, res, format).catch((error: unknown) => sendFailure(res, error, format));
  }, opts.port);

  return {
    url: service.url,
    token: opts.token,
    commandCount: () => executed,
    async stop() {
      await service.stop();
      await transactions.close();
      shared.disconnect();
    },
  };
}

function perCommand(error: Error | null, reply: RedisReply): Outcome {
  if (error === null) return { reply };
  if (isReplyError(error)) return { error: error.message };
  throw error;
}

const toJson =
  (base64: boolean) =>
  (outcome: Outcome): { result: unknown } | { error: string } =>
    "error" in outcome ? outcome : { result: encodeReply(outcome.reply, base64) };

const toResp2 = (outcome: Outcome): Buffer =>
  "error" in outcome ? encodeResp2(new Error(outcome.error)) : encodeResp2(outcome.reply);

/** `Upstash-Response-Format`: `json` (the default) or `resp2`; Upstash answers anything else 400. */
function responseFormat(req: IncomingMessage): ResponseFormat {
  const asked = String(req.headers["upstash-response-format"] ?? "json").toLowerCase();
  if (!(responseFormats as readonly string[]).includes(asked)) {
    throw new BridgeError(400, `ERR Upstash-Response-Format must be json or resp2, not '${asked}'`);
  }
  return asked as ResponseFormat;
}

function sendFailure(res: ServerResponse, error: unknown, format: ResponseFormat) {
  if (res.headersSent) return void res.destroy();
  const status = error instanceof BridgeError ? error.status : isReplyError(error) ? 400 : 500;
  const message =
    error instanceof BridgeError || isReplyError(error)
      ? error.message
      : `ERR bridge could not reach Redis: ${(error as Error).message}`;
  if (format === "resp2" && status === 400) return sendResp2(res, status, encodeResp2(new Error(message)));
  sendJson(res, status, { error: message });
}

function transactionAbortMessage(error: RedisReplyError): string {
  const causes = error.previousErrors ?? [];
  return [error.message, ...causes.map((cause) => cause.message)].join(": ");
}

function toRedisArgs(command: z.infer<typeof commandSchema>): RedisArgs {
  const [name, ...args] = command.map(String) as RedisArgs;
  if (refusedCommands.has(name.toLowerCase())) {
    throw new BridgeError(400, `ERR Command is not available over REST: '${name}'`);
  }
  // ioredis reshapes some replies (HGETALL into an object, …) keyed by the lower-case command
  // name; the upper-case name reaches Redis the same but keeps the raw flat reply.
  return [name.toUpperCase(), ...args];
}

/**
 * The REST API's URL form, `/set/key/value`: a POST body is the next argument, and query
 * parameters (`/set/key?EX=100`) the ones after it (`_token` is the credential, not an argument).
 */
function pathCommand(path: string, body: string, query: URLSearchParams): RedisArgs {
  const segments = path.split("/").slice(1).map(decodeURIComponent);
  const trailing = [...query]
    .filter(([name]) => name !== "_token")
    .flatMap(([name, value]) => (value === "" ? [name] : [name, value]));
  return toRedisArgs([...segments, ...(body.length > 0 ? [body] : []), ...trailing]);
}

function isAuthorized(req: IncomingMessage, token: string): boolean {
  const header = req.headers.authorization ?? "";
  const presented = header.startsWith("Bearer ")
    ? header.slice("Bearer ".length)
    : (new URL(req.url ?? "/", "http://bridge").searchParams.get("_token") ?? "");
  const expected = Buffer.from(token);
  const actual = Buffer.from(presented);
  return actual.length === expected.length && timingSafeEqual(actual, expected);
}

function parseJson<T>(body: string, schema: z.ZodType<T>): T {
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch {
    throw new BridgeError(400, "ERR failed to parse command: body is not JSON");
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new BridgeError(400, `ERR failed to parse command: ${parsed.error.message}`);
  return parsed.data;
}

function sendJson(res: ServerResponse, status: number, value: unknown) {
  sendBody(res, status, "application/json", JSON.stringify(value));
}

function sendResp2(res: ServerResponse, status: number, bytes: Buffer) {
  sendBody(res, status, "application/octet-stream", bytes);
}

function connectionPool(connect: () => Redis) {
  const idle: Redis[] = [];
  const all = new Set<Redis>();
  return {
    async acquire(): Promise<Redis> {
      const ready = idle.pop();
      if (ready) return ready;
      const connection = connect();
      connection.on("error", () => {});
      all.add(connection);
      await connection.connect();
      return connection;
    },
    release(connection: Redis) {
      if (connection.status === "ready" && idle.length < 8) idle.push(connection);
      else {
        all.delete(connection);
        connection.disconnect();
      }
    },
    async close() {
      for (const connection of all) connection.disconnect();
      all.clear();
      idle.length = 0;
    },
  };
}
