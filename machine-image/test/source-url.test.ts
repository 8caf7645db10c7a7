/**
 * Downloading a source from a URL against real local HTTP servers: the bytes arrive; every hop is
 * checked (no private address after a redirect, at most 5 redirects, loopback only where allowed,
 * even when a name resolves to it); the byte limit stops a declared or growing body; a container
 * that declares a duration over the limit stops the download early; HTTP errors are reported.
 */
import { execFile } from "node:child_process";
import { lookup } from "node:dns/promises";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { addressKind, type SourceFetchPolicy } from "@tcoder/worker/contract";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encodedDurationSeconds } from "../src/media/inspect.ts";
import { downloadSourceUrl, SourceFetchError } from "../src/storage/source-url.ts";

const run = promisify(execFile);
let dir: string;
let server: Server;
let base: string;
let clip: Buffer;
let longClip: Buffer;
let endlessBytesSent = 0;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "tcoder-source-url-"));
  const make = async (name: string, seconds: number) => {
    const path = join(dir, name);
    await run("ffmpeg", [
      ...["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi"],
      ...["-i", `testsrc2=size=320x240:rate=25:duration=${seconds}`],
      ...["-c:v", "libx264", "-preset", "ultrafast", "-movflags", "+faststart", path],
    ]);
    return readFile(path);
  };
  [clip, longClip] = await Promise.all([make("clip.mp4", 1), make("long.mp4", 20)]);
  server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    const hop = Number(url.searchParams.get("n") ?? 0);
    switch (url.pathname) {
      case "/clip.mp4":
        return void res.writeHead(200, { "content-type": "video/mp4", "content-length": clip.length }).end(clip);
      case "/redirect":
        return void res.writeHead(302, { location: url.searchParams.get("to") ?? "/" }).end();
      case "/hops":
        return void res
          .writeHead(301, {
            location:
              hop >= Number(url.searchParams.get("of"))
                ? "/clip.mp4"
                : `/hops?n=${hop + 1}&of=${url.searchParams.get("of")}`,
          })
          .end();
      case "/declared-huge":
        res.writeHead(200, { "content-type": "video/mp4", "content-length": String(10 * 1024 ** 3) });
        return void res.write(clip.subarray(0, 10));
      case "/endless": {
        // No length: the body just keeps growing until the client hangs up.
        res.writeHead(200, { "content-type": "video/mp4" });
        const chunk = Buffer.alloc(64 * 1024, 7);
        const pump = () => {
          while (!res.destroyed && res.write(chunk)) endlessBytesSent += chunk.length;
          if (!res.destroyed) res.once("drain", pump);
        };
        req.socket.on("close", () => res.destroy());
        return pump();
      }
      case "/slow-long.mp4": {
        // A faststart MP4 trickled out: its moov (with the duration) arrives long before the rest.
        res.writeHead(200, { "content-type": "video/mp4", "content-length": longClip.length });
        let offset = 0;
        const timer = setInterval(() => {
          if (res.destroyed || offset >= longClip.length) return clearInterval(timer);
          res.write(longClip.subarray(offset, offset + 8192));
          offset += 8192;
        }, 20);
        req.socket.on("close", () => clearInterval(timer));
        return;
      }
      case "/missing":
        return void res.writeHead(404).end("no");
      case "/broken":
        return void res.writeHead(503).end("later");
      default:
        return void res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve));
  await rm(dir, { recursive: true, force: true });
});

const local = (url: string, maxBytes = 50 * 1024 * 1024): SourceFetchPolicy => ({ url, maxBytes, allowLoopback: true });
let n = 0;
const target = () => join(dir, `download-${n++}`);

/** The SourceFetchError a download ends with (and that it left no partial file). */
async function refusal(policy: SourceFetchPolicy, opts: Parameters<typeof downloadSourceUrl>[2] = {}) {
  const path = target();
  const error = await downloadSourceUrl(policy, path, opts).then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(SourceFetchError);
  await expect(stat(path)).rejects.toThrow();
  const { code, message, retryable } = error as SourceFetchError;
  return { code, message, retryable };
}

describe("downloadSourceUrl", () => {
  it("streams the source to disk with its size and type, following up to 5 redirects", async () => {
    for (const url of [`${base}/clip.mp4`, `${base}/hops?n=1&of=5`]) {
      const path = target();
      expect(await downloadSourceUrl(local(url), path)).toEqual({ sizeBytes: clip.length, contentType: "video/mp4" });
      expect(await readFile(path)).toEqual(clip);
    }
  });

  it("refuses a sixth redirect", async () => {
    expect(await refusal(local(`${base}/hops?n=0&of=6`))).toEqual({
      code: "source_unreachable",
      message: "more than 5 redirects",
      retryable: false,
    });
  });

  it("refuses a redirect to a private or link-local address even where loopback is allowed", async () => {
    for (const to of [
      "http://169.254.169.254/latest/meta-data/",
      "http://10.0.0.1/x",
      "http://[fd00::1]/x",
      "ftp://example.com/x",
    ]) {
      const refused = await refusal(local(`${base}/redirect?to=${encodeURIComponent(to)}`));
      expect(refused).toMatchObject({ code: "source_unreachable", retryable: false });
      expect(refused.message).toMatch(/^redirected to a refused URL/);
    }
  });

  it("refuses loopback outside the local stack: as a literal, by name, and after DNS resolution", async () => {
    const port = (server.address() as AddressInfo).port;
    const strict = (url: string): SourceFetchPolicy => ({ url, maxBytes: 1e9, allowLoopback: false });
    expect((await refusal(strict(`https://127.0.0.1:${port}/clip.mp4`))).message).toMatch(/private, loopback/);
    expect((await refusal(strict(`https://localhost:${port}/clip.mp4`))).message).toMatch(/private, loopback/);
    // A name that is not `localhost` but resolves to this machine (here through /etc/hosts).
    const own = await lookup(hostname());
    expect(addressKind(own.address), `${hostname()} must resolve to a non-public address for this test`).not.toBe(
      "public",
    );
    const byName = await refusal(strict(`https://${hostname()}:${port}/clip.mp4`));
    expect(byName).toMatchObject({ code: "source_unreachable", retryable: false });
    expect(byName.message).toBe(`${hostname()} resolves to ${own.address}, a private, loopback or link-local address`);
  });

  it("refuses a body whose declared length is over the limit without reading it", async () => {
    expect(await refusal(local(`${base}/declared-huge`))).toEqual({
      code: "source_too_large",
      message: `the source declares ${10 * 1024 ** 3} bytes, over the limit of ${50 * 1024 * 1024} bytes`,
      retryable: false,
    });
  });

  it("stops a source that grows past the limit mid-download", async () => {
    const limit = 2 * 1024 * 1024;
    expect(await refusal(local(`${base}/endless`, limit))).toEqual({
      code: "source_too_large",
      message: `the source grew past the limit of ${limit} bytes`,
      retryable: false,
    });
    // The server was cut off soon after the limit, not left to send forever.
    await expect.poll(() => endlessBytesSent).toBeLessThan(limit + 16 * 1024 * 1024);
  });

  it("stops early when the first bytes already declare a duration over the limit", async () => {
    const started = Date.now();
    const refused = await refusal(local(`${base}/slow-long.mp4`), {
      partialCheckBytes: 16 * 1024,
      checkPartial: async (partial) => {
        const declared = await encodedDurationSeconds(partial);
        return declared !== undefined && declared > 10 ? `declares ${Math.round(declared)} s` : null;
      },
    });
    expect(refused).toEqual({ code: "source_too_large", message: "declares 20 s", retryable: false });
    // The trickle would take longClip.length / 8 KiB × 20 ms; the refusal came well before that.
    expect(Date.now() - started).toBeLessThan((longClip.length / 8192) * 20);
  });

  it("reports HTTP errors, a 5xx as worth another attempt", async () => {
    expect(await refusal(local(`${base}/missing`))).toEqual({
      code: "source_unreachable",
      message: `127.0.0.1:${(server.address() as AddressInfo).port} answered 404`,
      retryable: false,
    });
    expect(await refusal(local(`${base}/broken`))).toMatchObject({ code: "source_unreachable", retryable: true });
  });

  it("refuses URLs with credentials", async () => {
    const refused = await refusal(
      local(`http://user:secret@127.0.0.1:${(server.address() as AddressInfo).port}/clip.mp4`),
    );
    expect(refused).toEqual({
      code: "source_unreachable",
      message: "url must not carry credentials",
      retryable: false,
    });
  });
});
