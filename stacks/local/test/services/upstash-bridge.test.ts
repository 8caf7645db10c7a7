import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "@upstash/redis";
import { Redis as IORedis } from "ioredis";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { type RedisServer, startRedisServer } from "../../src/services/redis-server.ts";
import {
  MAX_KEY_BYTES,
  MAX_REQUEST_BYTES,
  startUpstashBridge,
  type UpstashBridge,
} from "../../src/services/upstash-bridge.ts";

let dir: string;
let server: RedisServer;
let bridge: UpstashBridge;
let direct: IORedis;
let redis: Redis;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "tcoder-bridge-"));
  server = await startRedisServer({ dir });
  bridge = await startUpstashBridge({ redisUrl: server.url, token: "bridge-token" });
  direct = new IORedis(server.url);
});
afterAll(async () => {
  await bridge?.stop();
  direct?.disconnect();
  await server?.stop();
  await rm(dir, { recursive: true, force: true });
});
beforeEach(async () => {
  await direct.flushall();
  redis = new Redis({ url: bridge.url, token: bridge.token, retry: false });
});

const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(`${bridge.url}${path}`, {
    method: "POST",
    headers: { authorization: `Bearer ${bridge.token}`, ...headers },
    body: JSON.stringify(body),
  });

describe("single commands through @upstash/redis", () => {
  it("sets, gets, increments and deletes strings", async () => {
    expect(await redis.set("name", "tcoder")).toBe("OK");
    expect(await redis.get("name")).toBe("tcoder");
    expect(await redis.incr("counter")).toBe(1);
    expect(await redis.incrby("counter", 41)).toBe(42);
    expect(await redis.del("name", "counter")).toBe(2);
    expect(await redis.get("name")).toBeNull();
    expect(await direct.exists("name")).toBe(0);
  });

  it("round-trips unicode and binary-looking strings byte for byte", async () => {
    const values = ["héllo wörld ✓ 🎬", "OK", "PONG", "line\nbreak\ttab", "\u0000\u0001\u00ff", "=?/+"];
    for (const [i, value] of values.entries()) {
      await redis.set(`v${i}`, value);
      expect(await redis.get(`v${i}`)).toBe(value);
      expect(await direct.get(`v${i}`)).toBe(value);
    }
    expect(await redis.mget(...values.map((_, i) => `v${i}`))).toEqual(values);
  });

  it("stores JSON values that the client deserializes automatically", async () => {
    await redis.set("job", { id: "j1", attempt: 2, tags: ["a", "b"] });
    expect(JSON.parse((await direct.get("job")) ?? "")).toEqual({ id: "j1", attempt: 2, tags: ["a", "b"] });
    expect(await redis.get("job")).toEqual({ id: "j1", attempt: 2, tags: ["a", "b"] });
  });

  it("reads hashes written with hset back as objects", async () => {
    expect(await redis.hset("job:1", { state: "pending", attempt: 1, preset: "hls" })).toBe(3);
    expect(await redis.hgetall("job:1")).toEqual({ state: "pending", attempt: 1, preset: "hls" });
    expect(await redis.hget("job:1", "state")).toBe("pending");
    expect(await direct.hgetall("job:1")).toEqual({ state: "pending", attempt: "1", preset: "hls" });
    expect(await redis.hgetall("missing")).toBeNull();
  });

  it("keeps sorted-set order and scores for zadd, zrange withScores and zpopmin", async () => {
    await redis.zadd("queue", { score: 30, member: "c" }, { score: 10, member: "a" }, { score: 20, member: "b" });
    expect(await redis.zrange("queue", 0, -1)).toEqual(["a", "b", "c"]);
    expect(await redis.zrange("queue", 0, -1, { withScores: true })).toEqual(["a", 10, "b", 20, "c", 30]);
    expect(await redis.zpopmin("queue")).toEqual(["a", 10]);
    expect(await redis.zcard("queue")).toBe(2);
    expect(await redis.zscore("queue", "c")).toBe(30);
  });

  it("sets expiries", async () => {
    await redis.set("lease", "m1");
    expect(await redis.expire("lease", 100)).toBe(1);
    expect(await redis.ttl("lease")).toBeGreaterThan(90);
    await redis.set("upload", "x", { ex: 50 });
    expect(await direct.ttl("upload")).toBeGreaterThan(40);
  });

  it("surfaces a WRONGTYPE reply as an error", async () => {
    await redis.set("plain", "x");
    await expect(redis.hget("plain", "f")).rejects.toThrow(/WRONGTYPE/);
  });
});

describe("pipelines and transactions", () => {
  it("runs a pipeline and returns one result per command, in order", async () => {
    const results = await redis.pipeline().set("a", "1").incr("a").get("a").hset("h", { f: "v" }).hgetall("h").exec();
    expect(results).toEqual(["OK", 2, 2, 1, { f: "v" }]);
  });

  it("reports a failing pipeline command without dropping the others", async () => {
    await redis.set("plain", "x");
    const results = await redis.pipeline().incr("n").lpush("plain", "y").incr("n").exec({ keepErrors: true });
    expect(results[0]).toEqual({ result: 1, error: undefined });
    expect(results[1]?.error).toMatch(/WRONGTYPE/);
    expect(results[2]).toEqual({ result: 2, error: undefined });
  });

  it("executes multi() atomically and returns every result", async () => {
    const results = await redis.multi().set("job:1", "running").sadd("running", "job:1").get("job:1").exec();
    expect(results).toEqual(["OK", 1, "running"]);
  });

  it("reports a command failing inside a transaction while the others still apply", async () => {
    await redis.set("plain", "x");
    const response = await post("/multi-exec", [
      ["INCR", "n"],
      ["HSET", "plain", "f", "v"],
      ["INCR", "n"],
    ]);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual([
      { result: 1 },
      { error: expect.stringMatching(/^WRONGTYPE/) },
      { result: 2 },
    ]);
    await expect(redis.multi().incr("n").hset("plain", { f: "v" }).exec()).rejects.toThrow(/WRONGTYPE/);
  });

  it("does not interleave concurrent transactions", async () => {
    // Each transaction writes its own marker twice; a foreign write in between would be visible
    // as a LRANGE that is not two equal markers in a row.
    await Promise.all(
      Array.from({ length: 20 }, (_, i) => redis.multi().rpush("log", `t${i}`).rpush("log", `t${i}`).exec()),
    );
    const log = await direct.lrange("log", 0, -1);
    expect(log).toHaveLength(40);
    for (let i = 0; i < log.length; i += 2) expect(log[i]).toBe(log[i + 1]);
  });

  it("answers a multi-exec whose queueing fails with an error and runs none of it", async () => {
    const response = await post("/multi-exec", [["SET", "a", "1"], ["NOSUCHCOMMAND"]]);
    expect(response.status).toBe(400);
    expect((await response.json()) as { error: string }).toEqual({ error: expect.stringMatching(/EXECABORT/) });
    expect(await direct.exists("a")).toBe(0);
  });

  it("batches concurrent calls into one pipeline with auto-pipelining (on by default)", async () => {
    const before = bridge.commandCount();
    const [a, b, c] = await Promise.all([redis.set("x", "1"), redis.incr("y"), redis.hset("h", { f: "v" })]);
    expect([a, b, c]).toEqual(["OK", 1, 1]);
    // The counter is not in the public type; it is how @upstash/redis tracks auto-pipeline flushes.
    expect((redis as unknown as { pipelineCounter: number }).pipelineCounter).toBe(1);
    expect(bridge.commandCount() - before).toBe(3);
  });
});

describe("Lua scripts", () => {
  const claim = `
    local popped = redis.call("ZPOPMIN", KEYS[1])
    if #popped == 0 then return nil end
    redis.call("HSET", KEYS[2], popped[1], ARGV[1])
    return {popped[1], popped[2]}
  `;

  it("runs eval with keys and args", async () => {
    await redis.zadd("queue", { score: 1, member: "job-1" });
    expect(await redis.eval(claim, ["queue", "leases"], ["machine-a"])).toEqual(["job-1", 1]);
    expect(await direct.hget("leases", "job-1")).toBe("machine-a");
    expect(await redis.eval(claim, ["queue", "leases"], ["machine-a"])).toBeNull();
  });

  it("loads a script and runs it by sha, and reports NOSCRIPT for an unknown sha", async () => {
    const sha = await redis.scriptLoad("return ARGV[1] .. '!'");
    expect(await redis.evalsha(sha, [], ["hi"])).toBe("hi!");
    await expect(redis.evalsha("0".repeat(40), [], [])).rejects.toThrow(/NOSCRIPT/);
  });

  it("lets createScript fall back from EVALSHA to EVAL, then use the cached sha", async () => {
    await direct.script("FLUSH");
    const script = redis.createScript<[string, number] | null>(claim);
    await redis.zadd("queue", { score: 5, member: "job-5" }, { score: 6, member: "job-6" });
    expect(await script.exec(["queue", "leases"], ["m1"])).toEqual(["job-5", 5]);
    const sha = script.sha1;
    expect(await direct.script("EXISTS", sha)).toEqual([1]);
    expect(await script.evalsha(["queue", "leases"], ["m2"])).toEqual(["job-6", 6]);
  });
});

describe("the REST protocol itself", () => {
  it("refuses a wrong or missing token with 401", async () => {
    const wrong = new Redis({ url: bridge.url, token: "not-the-token", retry: false });
    await expect(wrong.get("x")).rejects.toThrow(/Unauthorized/);
    const missing = await fetch(bridge.url, { method: "POST", body: JSON.stringify(["GET", "x"]) });
    expect(missing.status).toBe(401);
    expect(await missing.json()).toEqual({ error: "Unauthorized" });
  });

  it("answers a bad command on / with 400 and the Redis error", async () => {
    const response = await post("/", ["NOSUCHCOMMAND", "x"]);
    expect(response.status).toBe(400);
    expect(((await response.json()) as { error: string }).error).toMatch(/^ERR unknown command/);
  });

  it("base64-encodes strings, nested ones too, only when asked", async () => {
    await direct.hset("h", "field", "välue");
    const encoded = await post("/", ["HGETALL", "h"], { "upstash-encoding": "base64" });
    expect(await encoded.json()).toEqual({
      result: [Buffer.from("field").toString("base64"), Buffer.from("välue").toString("base64")],
    });
    const binary = Buffer.from([0x00, 0xff, 0xfe, 0x80, 0x0a]);
    await direct.set("bin", binary);
    const raw = await post("/", ["GET", "bin"], { "upstash-encoding": "base64" });
    expect(Buffer.from(((await raw.json()) as { result: string }).result, "base64").equals(binary)).toBe(true);
    const plain = await post("/", ["HGETALL", "h"]);
    expect(await plain.json()).toEqual({ result: ["field", "välue"] });
    const nested = await post("/", ["EVAL", "return {1, {'a', 'OK'}}", "0"], { "upstash-encoding": "base64" });
    expect(await nested.json()).toEqual({ result: [1, ["YQ==", "T0s="]] });
    const ok = await post("/", ["SET", "k", "v"], { "upstash-encoding": "base64" });
    expect(await ok.json()).toEqual({ result: "OK" });
  });

  it("answers a pipeline with one {result} or {error} per command", async () => {
    const response = await post("/pipeline", [
      ["SET", "k", "v"],
      ["HGET", "k", "f"],
      ["GET", "nope"],
      ["INCR", "n"],
    ]);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual([
      { result: "OK" },
      { error: expect.stringMatching(/^WRONGTYPE/) },
      { result: null },
      { result: 1 },
    ]);
  });

  it("accepts the URL form of a command", async () => {
    const response = await fetch(`${bridge.url}/set/greeting/hello%20there`, {
      headers: { authorization: `Bearer ${bridge.token}` },
    });
    expect(await response.json()).toEqual({ result: "OK" });
    expect(await direct.get("greeting")).toBe("hello there");
  });

  it("counts the Redis commands it executes", async () => {
    const before = bridge.commandCount();
    await post("/", ["PING"]);
    await post("/pipeline", [["PING"], ["PING"]]);
    await post("/multi-exec", [["PING"], ["PING"], ["PING"]]);
    expect(bridge.commandCount() - before).toBe(6);
  });
});

describe("what Upstash refuses, and the rest of its documented REST API", () => {
  const auth = () => ({ authorization: `Bearer ${bridge.token}` });
  const resp2 = { "upstash-response-format": "resp2" };

  it("refuses a request over 10 MB with Upstash's 'max request size exceeded', running nothing", async () => {
    await expect(redis.set("big", "x".repeat(MAX_REQUEST_BYTES))).rejects.toThrow(/ERR max request size exceeded/);
    expect(await direct.exists("big")).toBe(0);
    const raw = await post("/pipeline", [["SET", "big", "x".repeat(MAX_REQUEST_BYTES)]]);
    expect(raw.status).toBe(400);
    expect(await raw.json()).toEqual({ error: "ERR max request size exceeded" });
    expect(await redis.set("big", "x".repeat(MAX_REQUEST_BYTES - 1024))).toBe("OK");
  });

  it("refuses a key over 32 KB with Upstash's 'max key size exceeded', wherever the key is", async () => {
    const bigKey = "k".repeat(MAX_KEY_BYTES + 1);
    const message = `ERR max key size exceeded. Limit: ${MAX_KEY_BYTES} bytes, Actual: ${MAX_KEY_BYTES + 1} bytes`;
    await expect(redis.set(bigKey, "v")).rejects.toThrow(message);
    await expect(redis.eval("return redis.call('GET', KEYS[1])", [bigKey], [])).rejects.toThrow(message);
    expect(await redis.pipeline().set(bigKey, "v").incr("n").exec({ keepErrors: true })).toEqual([
      { result: undefined, error: message },
      { result: 1, error: undefined },
    ]);
    await expect(redis.multi().incr("m").set(bigKey, "v").exec()).rejects.toThrow(message);
    expect(await direct.exists("m")).toBe(0);
    // A value, or a script argument, that size is not a key.
    expect(await redis.set("k", "v".repeat(MAX_KEY_BYTES + 1))).toBe("OK");
    expect(await redis.eval("return #ARGV[1]", [], [bigKey])).toBe(MAX_KEY_BYTES + 1);
    expect(await redis.set("k".repeat(MAX_KEY_BYTES), "v")).toBe("OK");
  });

  it("takes the arguments after a POST body from the query string, and never the _token", async () => {
    const set = await fetch(`${bridge.url}/set/session?EX=100`, { method: "POST", headers: auth(), body: '{"a":1}' });
    expect(await set.json()).toEqual({ result: "OK" });
    expect(await direct.get("session")).toBe('{"a":1}');
    expect(await direct.ttl("session")).toBeGreaterThan(90);
    const notAgain = await fetch(`${bridge.url}/set/session?NX`, { method: "POST", headers: auth(), body: "other" });
    expect(await notAgain.json()).toEqual({ result: null });
    const read = await fetch(`${bridge.url}/get/session?_token=${bridge.token}`);
    expect(await read.json()).toEqual({ result: '{"a":1}' });
  });

  it("answers in RESP2 with Upstash-Response-Format: resp2, a pipeline as the replies in a row", async () => {
    const call = async (command: unknown[]) => {
      const response = await post("/", command, resp2);
      expect(response.headers.get("content-type")).toBe("application/octet-stream");
      return { status: response.status, body: Buffer.from(await response.arrayBuffer()).toString("latin1") };
    };
    expect(await call(["SET", "k", "välue"])).toEqual({ status: 200, body: "+OK\r\n" });
    expect(await call(["GET", "k"])).toEqual({ status: 200, body: "$6\r\nv\u00c3\u00a4lue\r\n" });
    expect(await call(["GET", "missing"])).toEqual({ status: 200, body: "$-1\r\n" });
    expect(await call(["INCR", "n"])).toEqual({ status: 200, body: ":1\r\n" });
    await direct.hset("h", "f", "v");
    expect(await call(["HGETALL", "h"])).toEqual({ status: 200, body: "*2\r\n$1\r\nf\r\n$1\r\nv\r\n" });
    const wrongType = await call(["HGET", "k", "f"]);
    expect(wrongType.status).toBe(400);
    expect(wrongType.body).toMatch(/^-WRONGTYPE .*\r\n$/);
    const pipeline = await post(
      "/pipeline",
      [
        ["INCR", "n"],
        ["HGET", "k", "f"],
        ["GET", "missing"],
      ],
      resp2,
    );
    expect(Buffer.from(await pipeline.arrayBuffer()).toString()).toMatch(/^:2\r\n-WRONGTYPE [^\r]*\r\n\$-1\r\n$/);
    // Transactions answer JSON whatever the format (Upstash: "not applicable to /multi-exec").
    expect(await (await post("/multi-exec", [["INCR", "n"]], resp2)).json()).toEqual([{ result: 3 }]);
  });

  it("refuses any other Upstash-Response-Format, and resp2 with base64, with 400", async () => {
    const xml = await post("/", ["PING"], { "upstash-response-format": "xml" });
    expect(xml.status).toBe(400);
    expect(((await xml.json()) as { error: string }).error).toMatch(/Upstash-Response-Format/);
    const both = await post("/", ["PING"], { ...resp2, "upstash-encoding": "base64" });
    expect(both.status).toBe(400);
    expect((await post("/", ["PING"], { "upstash-response-format": "json" })).status).toBe(200);
  });

  it("answers 405 to methods other than HEAD, GET, POST and PUT", async () => {
    const response = await fetch(`${bridge.url}/get/k`, { method: "DELETE", headers: auth() });
    expect(response.status).toBe(405);
    expect((await fetch(`${bridge.url}/set/k/v`, { method: "PUT", headers: auth() })).status).toBe(200);
  });
});

describe("when Redis restarts", () => {
  it("reconnects and keeps serving the persisted data", async () => {
    const ownDir = await mkdtemp(join(tmpdir(), "tcoder-bridge-restart-"));
    let own = await startRedisServer({ dir: ownDir });
    const ownBridge = await startUpstashBridge({ redisUrl: own.url, token: "t" });
    const client = new Redis({ url: ownBridge.url, token: "t", retry: false });
    try {
      await client.set("job:1", "pending");
      await own.stop();
      own = await startRedisServer({ dir: ownDir, port: own.port });
      expect(await client.get("job:1")).toBe("pending");
    } finally {
      await ownBridge.stop();
      await own.stop();
      await rm(ownDir, { recursive: true, force: true });
    }
  });
});
