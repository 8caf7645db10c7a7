/**
 * The Upstash Redis REST protocol over a real redis-server, so the worker's `@upstash/redis`
 * client runs unchanged against the local cloud. What @upstash/redis 1.39 sends (pkg/http.ts):
 * POST with `Authorization: Bearer <token>`, a JSON command array to `/`, an array of them to
 * `/pipeline` or `/multi-exec`, and `Upstash-Encoding: base64` asking for base64 strings.
 */
import { timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Redis, ReplyError } from "ioredis";
import { z } from "zod";
import { encodeReply, type RedisReply, type RestValue } from "./upstash-reply.ts";

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

  const runOne = async (command: RedisArgs, base64: boolean): Promise<RestValue> => {
    executed += 1;
    const [name, ...args] = command;
    return encodeReply((await shared.callBuffer(name, ...args)) as RedisReply, base64);
  };

  const runPipeline = async (commands: RedisArgs[], base64: boolean) => {
    const pipeline = shared.pipeline();
    for (const [name, ...args] of commands) pipeline.callBuffer(name, ...args);
    executed += commands.length;
    const replies = (await pipeline.exec()) ?? [];
    return replies.map(([error, reply]) => perCommand(error, reply as RedisReply, base64));
  };

  // MULTI/EXEC on a connection of its own, so two concurrent transactions never interleave.
  const runTransaction = async (commands: RedisArgs[], base64: boolean) => {
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
      return replies.map(([error, reply]) => perCommand(error, reply as RedisReply, base64));
    } finally {
      transactions.release(connection);
    }
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    if (!isAuthorized(req, opts.token)) throw new BridgeError(401, "Unauthorized");
    const url = new URL(req.url ?? "/", "http://bridge");
    const base64 = String(req.headers["upstash-encoding"] ?? "").toLowerCase() === "base64";
    const body = await readBody(req);
    const path = url.pathname.replace(/\/+$/, "");

    if (path === "/pipeline" || path === "/multi-exec") {
      const commands = parseJson(body, batchSchema).map(toRedisArgs);
      const results =
        path === "/pipeline" ? await runPipeline(commands, base64) : await runTransaction(commands, base64);
      return sendJson(res, 200, results);
    }
    const command = path === "" ? toRedisArgs(parseJson(body, commandSchema)) : pathCommand(path, body);
    return sendJson(res, 200, { result: await runOne(command, base64) });
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      if (error instanceof BridgeError) return sendJson(res, error.status, { error: error.message });
      if (isReplyError(error)) return sendJson(res, 400, { error: error.message });
      return sendJson(res, 500, { error: `ERR bridge could not reach Redis: ${(error as Error).message}` });
    });
  });
  await new Promise<void>((done) => server.listen(opts.port ?? 0, "127.0.0.1", done));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    token: opts.token,
    commandCount: () => executed,
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((done) => server.close(() => done()));
      await transactions.close();
      shared.disconnect();
    },
  };
}

function perCommand(
  error: Error | null,
  reply: RedisReply,
  base64: boolean,
): { result: RestValue } | { error: string } {
  if (error === null) return { result: encodeReply(reply, base64) };
  if (isReplyError(error)) return { error: error.message };
  throw error;
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

/** The REST API's URL form, `/set/key/value`, with a POST body as the last argument. */
function pathCommand(path: string, body: string): RedisArgs {
  const segments = path.split("/").slice(1).map(decodeURIComponent);
  return toRedisArgs(body.length > 0 ? [...segments, body] : segments);
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

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

function sendJson(res: ServerResponse, status: number, value: unknown) {
  const body = JSON.stringify(value);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  res.end(body);
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
