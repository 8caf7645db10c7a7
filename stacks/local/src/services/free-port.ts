import { readFile } from "node:fs/promises";
import { createServer } from "node:net";

/** Linux's default when /proc cannot be read. */
const defaultEphemeralRange: [number, number] = [32768, 60999];
const lowestCandidate = 10_000;
const attempts = 64;

async function ephemeralRange(): Promise<[number, number]> {
  try {
    const [low, high] = (await readFile("/proc/sys/net/ipv4/ip_local_port_range", "utf8"))
      .trim()
      .split(/\s+/)
      .map(Number);
    if (Number.isInteger(low) && Number.isInteger(high)) return [low as number, high as number];
  } catch {
    // Not Linux, or /proc is hidden: the default range is the usual answer.
  }
  return defaultEphemeralRange;
}

function probe(port: number): Promise<number | null> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", (err: NodeJS.ErrnoException) =>
      err.code === "EADDRINUSE" || err.code === "EACCES" ? resolve(null) : reject(err),
    );
    server.listen(port, "127.0.0.1", () => {
      const address = server.address();
      if (address === null || typeof address === "string") {
        server.close();
        reject(new Error("could not read the probe socket's port"));
        return;
      }
      server.close(() => resolve(address.port));
    });
  });
}

/**
 * A TCP port on 127.0.0.1 that nothing listens on right now, for a server that is started later by
 * another process (workerd, redis-server). It is taken from below the kernel's ephemeral range:
 * a port the kernel handed out for `listen(0)` is free again once the probe closes, and any
 * outgoing connection or other `listen(0)` may take it before the real server binds it (CI saw
 * workerd fail with "Address already in use" that way). Ports below the range are only ever
 * taken by someone asking for them by number.
 */
export async function freePort(): Promise<number> {
  const [ephemeralLow] = await ephemeralRange();
  const span = ephemeralLow - lowestCandidate;
  if (span > 0) {
    for (let i = 0; i < attempts; i++) {
      const port = await probe(lowestCandidate + Math.floor(Math.random() * span));
      if (port !== null) return port;
    }
  }
  const port = await probe(0);
  if (port === null) throw new Error("could not find a free TCP port on 127.0.0.1");
  return port;
}
