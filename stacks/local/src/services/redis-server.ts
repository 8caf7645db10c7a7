/**
 * A real redis-server for the local cloud: one process per data directory, AOF persistence so a
 * restart on the same dir keeps every job, and no orphan left behind if the test process dies.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdir } from "node:fs/promises";
import { connect } from "node:net";
import { resolve } from "node:path";
import { freePort } from "./free-port.ts";

export interface RedisServerOptions {
  /** Data directory (AOF + RDB). Restarting on the same dir resumes the same data. */
  dir: string;
  /** Defaults to a free port chosen by the OS; pass the previous port to restart in place. */
  port?: number;
  /** "always" makes even a SIGKILL lose nothing; "everysec" (default) is Redis' own default. */
  appendfsync?: "always" | "everysec";
}

export interface RedisServer {
  port: number;
  /** `redis://127.0.0.1:<port>` */
  url: string;
  /** Clean shutdown (SIGTERM: Redis flushes the AOF), resolves once the process has exited. */
  stop(): Promise<void>;
  /** Crash it (SIGKILL), for fault tests. */
  kill(): Promise<void>;
}

const startupTimeoutMs = 15_000;
const shutdownTimeoutMs = 15_000;

export async function startRedisServer(opts: RedisServerOptions): Promise<RedisServer> {
  const dir = resolve(opts.dir);
  await mkdir(dir, { recursive: true });
  const port = opts.port ?? (await freePort());
  const args = [
    "--bind",
    "127.0.0.1",
    "--port",
    String(port),
    "--dir",
    dir,
    "--appendonly",
    "yes",
    "--appendfsync",
    opts.appendfsync ?? "everysec",
    "--save",
    "",
    "--daemonize",
    "no",
    "--protected-mode",
    "no",
    "--logfile",
    "",
  ];
  const child = spawn("redis-server", args, { stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  const keepLog = (chunk: Buffer) => {
    log = (log + chunk.toString()).slice(-4000);
  };
  child.stdout?.on("data", keepLog);
  child.stderr?.on("data", keepLog);
  const exited = new Promise<void>((done) => child.once("exit", () => done()));
  const watchdog = startWatchdog(child);
  const killOnExit = () => child.kill("SIGKILL");
  process.once("exit", killOnExit);

  const cleanup = () => {
    process.off("exit", killOnExit);
    // The shell dies first, so when `cat` then sees EOF nobody is left to run its `kill`.
    watchdog.kill("SIGKILL");
    watchdog.stdin?.destroy();
  };

  try {
    await waitForPing(port, exited);
  } catch (error) {
    child.kill("SIGKILL");
    await exited;
    cleanup();
    throw new Error(`redis-server on port ${port} did not start: ${(error as Error).message}\n${log}`);
  }

  const terminate = async (signal: NodeJS.Signals) => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill(signal);
      const timer = setTimeout(() => child.kill("SIGKILL"), shutdownTimeoutMs);
      await exited;
      clearTimeout(timer);
    }
    cleanup();
  };

  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    stop: () => terminate("SIGTERM"),
    kill: () => terminate("SIGKILL"),
  };
}

/**
 * A `sh` that holds the read end of a pipe from this process: when this process dies in any way
 * (even SIGKILL, where no exit handler runs) the pipe closes, `cat` returns and redis is killed.
 */
function startWatchdog(redis: ChildProcess): ChildProcess {
  const watchdog = spawn("sh", ["-c", `cat >/dev/null; kill -KILL ${redis.pid} 2>/dev/null`], {
    stdio: ["pipe", "ignore", "ignore"],
  });
  watchdog.unref();
  // The pipe must not keep the event loop alive, only the process' lifetime matters.
  (watchdog.stdin as unknown as { unref?: () => void } | null)?.unref?.();
  return watchdog;
}

async function waitForPing(port: number, exited: Promise<void>): Promise<void> {
  let hasExited = false;
  void exited.then(() => {
    hasExited = true;
  });
  const deadline = Date.now() + startupTimeoutMs;
  while (Date.now() < deadline) {
    if (hasExited) throw new Error("process exited");
    if (await answersPing(port)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error("no PONG before the startup timeout");
}

function answersPing(port: number): Promise<boolean> {
  return new Promise((done) => {
    const socket = connect({ host: "127.0.0.1", port });
    let reply = "";
    const finish = (ok: boolean) => {
      socket.destroy();
      done(ok);
    };
    socket.setTimeout(1000, () => finish(false));
    socket.on("error", () => finish(false));
    socket.on("connect", () => socket.write("PING\r\n"));
    socket.on("data", (chunk) => {
      reply += chunk.toString();
      if (reply.includes("\r\n")) finish(reply.startsWith("+PONG"));
    });
  });
}
