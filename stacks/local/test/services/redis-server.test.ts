import { spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Redis } from "ioredis";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { startRedisServer } from "../../src/services/redis-server.ts";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "tcoder-redis-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const isAlive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** Live (non-zombie) child processes, from /proc. */
function childrenOf(pid: number): number[] {
  return readdirSync("/proc")
    .filter((entry) => /^\d+$/.test(entry))
    .filter((entry) => {
      try {
        const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
        const [state, ppid] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
        return Number(ppid) === pid && state !== "Z";
      } catch {
        return false;
      }
    })
    .map(Number)
    .sort((a, b) => a - b);
}

async function waitUntil(condition: () => boolean, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("startRedisServer", () => {
  it("answers on a free port and keeps data across a restart on the same dir and port", async () => {
    const first = await startRedisServer({ dir });
    const client = new Redis(first.url, { maxRetriesPerRequest: 1 });
    await client.zadd("jobs:queue", "1", "job-1");
    await client.quit();
    await first.stop();

    const second = await startRedisServer({ dir, port: first.port });
    expect(second.url).toBe(first.url);
    const again = new Redis(second.url);
    expect(await again.zrange("jobs:queue", "0", "-1")).toEqual(["job-1"]);
    await again.quit();
    await second.stop();
  });

  it("keeps acknowledged writes after a crash when appendfsync is always", async () => {
    const server = await startRedisServer({ dir, appendfsync: "always" });
    const client = new Redis(server.url, { maxRetriesPerRequest: 0, retryStrategy: () => null });
    client.on("error", () => {});
    await client.set("lease", "machine-1");
    await server.kill();
    client.disconnect();

    const restarted = await startRedisServer({ dir, port: server.port });
    const again = new Redis(restarted.url);
    expect(await again.get("lease")).toBe("machine-1");
    await again.quit();
    await restarted.stop();
  });

  it("stop() leaves no redis-server (or watchdog) process behind", async () => {
    const childrenBefore = childrenOf(process.pid);
    const server = await startRedisServer({ dir });
    const client = new Redis(server.url);
    const pid = Number((await client.info("server")).match(/process_id:(\d+)/)?.[1]);
    await client.quit();
    expect(isAlive(pid)).toBe(true);
    await server.stop();
    expect(isAlive(pid)).toBe(false);
    await waitUntil(() => childrenOf(process.pid).length === childrenBefore.length);
    expect(childrenOf(process.pid)).toEqual(childrenBefore);
  });

  it("kills redis-server when the process that started it is SIGKILLed", async () => {
    const module = fileURLToPath(new URL("../../src/services/redis-server.ts", import.meta.url));
    const script = `
      const { startRedisServer } = await import(${JSON.stringify(module)});
      const server = await startRedisServer({ dir: ${JSON.stringify(dir)} });
      const net = await import("node:net");
      const s = net.connect(server.port, "127.0.0.1", () => s.write("INFO server\\r\\n"));
      s.on("data", (d) => { const m = String(d).match(/process_id:(\\d+)/); if (m) { console.log(m[1]); s.destroy(); } });
      setInterval(() => {}, 1000);
    `;
    const parent = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    const redisPid = await new Promise<number>((resolvePid) =>
      parent.stdout.on("data", (chunk) => resolvePid(Number(String(chunk).trim()))),
    );
    expect(isAlive(redisPid)).toBe(true);
    parent.kill("SIGKILL");
    await waitUntil(() => !isAlive(redisPid));
    expect(isAlive(redisPid)).toBe(false);
  });
});
