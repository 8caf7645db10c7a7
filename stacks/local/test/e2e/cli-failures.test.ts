/**
 * How `tcoder` fails. A wrong argument is named before anything starts: no child process (no
 * redis-server, no workerd) and no state directory. An API that cannot be reached is named with the
 * cause, a refused token is said to be refused, for every command that talks to an API. No stack
 * trace shows unless --verbose asks for it.
 */
import { execFile, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, mkdir, mkdtemp, readFile, rm, stat, truncate, writeFile } from "node:fs/promises";
import { createServer as createHttpServer } from "node:http";
import { type AddressInfo, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { defaultVars } from "@tcoder/worker/bindings";
import { presetNames } from "@tcoder/worker/contract";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { whyNoAnswer } from "../../src/cli/unreachable.ts";
import { repoRoot } from "../../src/stack.ts";
import { type FaultStack, startFaultStack, waitFor } from "../reliability/harness.ts";

const tcoder = join(repoRoot, "stacks", "local", "bin", "tcoder.mjs");

/**
 * Loaded into the CLI's node with --import: appends every child process the CLI starts to
 * $SPAWN_LOG. Node's `child_process` diagnostics channel sees spawn, exec, execFile and fork; the
 * command line is set once the synchronous spawn call returns, hence the nextTick.
 */
const spawnRecorder = `data:text/javascript,${encodeURIComponent(`
import { subscribe } from "node:diagnostics_channel";
import { appendFileSync } from "node:fs";
subscribe("child_process", ({ process: child }) => {
  appendFileSync(process.env.SPAWN_LOG, "a child process\\n");
  process.nextTick(() => appendFileSync(process.env.SPAWN_LOG, "  " + child.spawnargs.join(" ") + "\\n"));
});
`)}`;

/** A stack trace line, as Node prints them. */
const stackLine = /^\s+at .+:\d+:\d+\)?$/m;
const nobody = 65534;

let root: string;
let files: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "tcoder-cli-failures-"));
  files = join(root, "files");
  await mkdir(files);
  // The CLI may run as nobody (see `unreadable`): it must be able to reach everything here.
  await chmod(root, 0o755);
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  /** Child processes the CLI started, one per line ("" when none). */
  children: string;
  /** Whether the default state directory (`.tcoder` in the working directory) appeared. */
  stateDirCreated: boolean;
}

/** Runs tcoder in a fresh working directory, as another user when `uid` is given. */
async function tcoderIn(args: string[], opts: { uid?: number } = {}): Promise<Run> {
  const cwd = await mkdtemp(join(root, "cwd-"));
  // World-writable so that a CLI running as nobody could create its state directory if it tried.
  await chmod(cwd, 0o777);
  const spawnLog = join(cwd, "children.log");
  const env: NodeJS.ProcessEnv = { ...process.env, SPAWN_LOG: spawnLog };
  for (const name of ["TCODER_API_URL", "TCODER_API_TOKEN", "TCODER_PORT"]) delete env[name];
  const child = spawn(process.execPath, ["--import", spawnRecorder, tcoder, ...args], {
    cwd,
    env,
    stdio: ["ignore", "pipe", "pipe"],
    ...(opts.uid === undefined ? {} : { uid: opts.uid, gid: opts.uid }),
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  child.stderr.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const code = await new Promise<number | null>((resolve) => child.once("close", (c) => resolve(c)));
  const children = await readFile(spawnLog, "utf8").catch(() => "");
  return { code, stdout, stderr, children, stateDirCreated: existsSync(join(cwd, ".tcoder")) };
}

/** A file of `size` bytes that takes no disk space. */
async function sparseFile(name: string, size: number): Promise<string> {
  const path = join(files, name);
  await writeFile(path, "");
  await truncate(path, size);
  return path;
}

/** A few bytes named like a clip: these runs are refused before any byte would be read. */
async function clip(name = "clip.mp4"): Promise<string> {
  const path = join(files, name);
  await writeFile(path, "not really a video; never uploaded");
  return path;
}

function expectNothingStarted(run: Run) {
  expect(run.children).toBe("");
  expect(run.stateDirCreated).toBe(false);
}

describe("arguments are checked before anything starts", () => {
  it("names a file that does not exist, exits 2 and starts nothing", async () => {
    const run = await tcoderIn(["transcode", "/no/such/file.mp4"]);
    expect(run.stderr).toBe("tcoder: /no/such/file.mp4: no such file\n");
    expect(run.code).toBe(2);
    expectNothingStarted(run);
  });

  it("names every wrong file at once: a directory, an empty file, a pipe, one over the upload limit", async () => {
    const limit = Number(defaultVars.MAX_UPLOAD_BYTES);
    const directory = join(files, "a-directory");
    await mkdir(directory);
    const empty = join(files, "empty.mp4");
    await writeFile(empty, "");
    const pipe = join(files, "pipe.mp4");
    await promisify(execFile)("mkfifo", [pipe]);
    const tooBig = await sparseFile("too-big.mp4", limit + 1);
    const atLimit = await sparseFile("at-limit.mp4", limit);
    const good = await clip();

    const run = await tcoderIn(["transcode", good, directory, empty, atLimit, pipe, tooBig]);
    expect(run.stderr.split("\n")).toEqual([
      "tcoder: 4 of 6 files cannot be sent:",
      `  ${directory}: is a directory; name the media files in it`,
      `  ${empty}: is empty`,
      `  ${pipe}: is not a regular file (a pipe, socket or device cannot be uploaded)`,
      `  ${tooBig}: is ${limit + 1} bytes (5.0 GiB), over the upload limit of ${limit} bytes (5.0 GiB)`,
      "",
    ]);
    expect(run.code).toBe(2);
    expectNothingStarted(run);
  });

  it("names a file that cannot be read", async () => {
    const unreadable = await clip("unreadable.mp4");
    await chmod(unreadable, 0o000);
    // root reads any file whatever its mode, so the CLI runs as nobody when the test runs as root.
    const run = await tcoderIn(["transcode", unreadable], process.getuid?.() === 0 ? { uid: nobody } : {});
    expect(run.stderr).toBe(`tcoder: ${unreadable}: cannot be read: permission denied\n`);
    expect(run.code).toBe(2);
    expectNothingStarted(run);
  });

  it("refuses an unknown preset at once and lists the valid ones", async () => {
    const run = await tcoderIn(["transcode", await clip(), "--preset", "nope"]);
    expect(run.stderr).toBe(`tcoder: unknown preset "nope"; the presets are ${presetNames.join(", ")}\n`);
    expect(presetNames).toContain("hls-ladder");
    expect(run.code).toBe(2);
    expectNothingStarted(run);
  });

  it("refuses an --api that is not an http(s) URL, and bad numbers and states, before anything starts", async () => {
    const cases: [string[], string][] = [
      [
        ["transcode", await clip(), "--api", "tcoder.example.com", "--token", "t"],
        '--api "tcoder.example.com" is not a URL',
      ],
      [["status", "--api", "ftp://example.com", "--token", "t"], "must be an http:// or https:// address"],
      [["transcode", await clip(), "--port", "eighty"], '--port must be a positive whole number, got "eighty"'],
      [["jobs", "--state", "done"], '--state "done" is not a job state; the states are awaiting_upload'],
      [["jobs", "--limit", "0"], '--limit must be a positive whole number, got "0"'],
    ];
    for (const [args, message] of cases) {
      const run = await tcoderIn(args);
      expect(run.stderr, args.join(" ")).toContain(message);
      expect(run.code, args.join(" ")).toBe(2);
      expectNothingStarted(run);
    }
  });

  it("refuses a bad --loudness and --captions that the API would refuse, before anything starts", async () => {
    const vtt = join(files, "talk.vtt");
    await writeFile(vtt, "WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nHello\n");
    const prose = join(files, "notes.srt");
    await writeFile(prose, "just some words\nno cues here\n");
    const latin1 = join(files, "latin1.srt");
    await writeFile(latin1, Buffer.from("1\r\n00:00:01,000 --> 00:00:02,000\r\nd\xe9j\xe0 vu\r\n", "latin1"));
    const huge = join(files, "huge.vtt");
    await writeFile(huge, `WEBVTT\n\n${"00:00:01.000 --> 00:00:02.000\nline\n\n".repeat(40_000)}`);
    const loudnessRange = "--loudness must be a loudness in LUFS from -31 to -10 (-23 is EBU R128, -16 streaming)";
    const cases: [string[], string][] = [
      [["--loudness", "-40"], `${loudnessRange} or the word broadcast or streaming, got "-40"`],
      [["--loudness", "loud"], `${loudnessRange} or the word broadcast or streaming, got "loud"`],
      [["--loudness=0x10"], `${loudnessRange} or the word broadcast or streaming, got "0x10"`],
      [
        ["--captions", vtt],
        `--captions ${vtt} needs a --captions-language (one for each --captions, in the same order)`,
      ],
      [["--captions-language", "fr"], "--captions-language fr has no --captions file to go with"],
      [
        ["--captions", vtt, "--captions-language", "french"],
        '--captions-language "french" is not a BCP 47 language tag (such as en, pt-BR or yue-Hant)',
      ],
      [
        ["--captions", join(files, "gone.vtt"), "--captions-language", "fr"],
        `--captions ${join(files, "gone.vtt")}: no such file`,
      ],
      [
        ["--captions", prose, "--captions-language", "fr"],
        `--captions ${prose}: not a WebVTT file (WEBVTT first line) or a SubRip file`,
      ],
      [["--captions", latin1, "--captions-language", "fr"], `--captions ${latin1}: captions must be UTF-8 text`],
      [
        ["--captions", huge, "--captions-language", "fr"],
        `--captions ${huge}: is ${(await stat(huge)).size} bytes, over the captions limit of 1048576 bytes`,
      ],
      [
        ["--captions", vtt, "--captions-language", "fr", "--preset", "mp4-720p"],
        "--captions need a preset with an HLS package; mp4-720p has none",
      ],
      [
        ["--captions", vtt, "--captions-language", "fr", "--captions", vtt, "--captions-language", "FR"],
        "--captions-language names a language twice",
      ],
    ];
    for (const [flags, message] of cases) {
      const run = await tcoderIn(["transcode", await clip(), ...flags]);
      expect(run.stderr, flags.join(" ")).toContain(`tcoder: ${message}`);
      expect(run.code, flags.join(" ")).toBe(2);
      expectNothingStarted(run);
    }
  });

  it("shows the stack trace of a refused argument only with --verbose", async () => {
    const missing = join(files, "missing.mp4");
    const quiet = await tcoderIn(["transcode", missing]);
    expect(quiet.stderr).not.toMatch(stackLine);
    const verbose = await tcoderIn(["transcode", missing, "--verbose"]);
    expect(verbose.stderr.split("\n")[0]).toBe(`tcoder: ${missing}: no such file`);
    expect(verbose.stderr).toMatch(stackLine);
    expect(verbose.code).toBe(2);
    expectNothingStarted(verbose);
  });

  // The checks above are only worth something if they see a stack that does start.
  it("sees the processes and the state directory of a transcode whose arguments are fine", async () => {
    const cwd = await mkdtemp(join(root, "cwd-"));
    const spawnLog = join(cwd, "children.log");
    const child = spawn(process.execPath, ["--import", spawnRecorder, tcoder, "transcode", await clip()], {
      cwd,
      env: { ...process.env, SPAWN_LOG: spawnLog },
      stdio: "ignore",
      // Its own process group, so that redis-server and everything else it started go with it.
      detached: true,
    });
    const exited = new Promise((resolve) => child.once("exit", resolve));
    try {
      const children = await waitFor("the stack's redis-server", async () => {
        const log = await readFile(spawnLog, "utf8").catch(() => "");
        return log.includes("redis-server") ? log : undefined;
      });
      expect(children).toContain("a child process");
      expect(existsSync(join(cwd, ".tcoder"))).toBe(true);
    } finally {
      process.kill(-(child.pid ?? 0), "SIGKILL");
      await exited;
    }
  }, 120_000);
});

/** A TCP port nothing listens on: bound, then closed. */
async function closedPort(): Promise<number> {
  const server = createServer().listen(0, "127.0.0.1");
  await new Promise((resolve) => server.once("listening", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Starts `server` on a free port; its connections are kept so that `afterAll` can close them. */
async function listening(server: Server): Promise<string> {
  server.on("connection", (socket) => openSockets.add(socket));
  server.listen(0, "127.0.0.1");
  await new Promise((resolve) => server.once("listening", resolve));
  return `127.0.0.1:${(server.address() as AddressInfo).port}`;
}

const openSockets = new Set<Socket>();

describe("an API that gives no answer is named with the cause", () => {
  const servers: Server[] = [];
  afterAll(async () => {
    for (const socket of openSockets) socket.destroy();
    for (const server of servers) await new Promise((resolve) => server.close(resolve));
  });

  it("says the connection was refused, for every command that talks to an API", async () => {
    const api = `http://127.0.0.1:${await closedPort()}`;
    const file = await clip();
    for (const args of [["transcode", file], ["status"], ["status", "job_x"], ["jobs"], ["cancel", "job_x"]]) {
      const run = await tcoderIn([...args, "--api", api, "--token", "t"]);
      expect(run.stderr, args.join(" ")).toBe(
        `tcoder: cannot reach the API at ${api}: connection refused (nothing listens on port ${new URL(api).port} of 127.0.0.1)\n`,
      );
      expect(run.code, args.join(" ")).toBe(1);
      expectNothingStarted(run);
    }
  });

  it("says port 9 is one fetch never connects to (the Fetch standard's blocked ports)", async () => {
    const run = await tcoderIn(["transcode", await clip(), "--api", "http://127.0.0.1:9", "--token", "x"]);
    expect(run.stderr).toBe(
      "tcoder: cannot reach the API at http://127.0.0.1:9: port 9 is on the Fetch standard's list of blocked ports, so no request is sent to it\n",
    );
    expect(run.code).toBe(1);
  });

  it("says the DNS lookup failed for a host that does not exist", async () => {
    // .invalid never resolves (RFC 6761); without a network the resolver fails too.
    const run = await tcoderIn(["jobs", "--api", "http://tcoder.invalid", "--token", "t"]);
    expect(run.stderr).toMatch(/^tcoder: cannot reach the API at http:\/\/tcoder\.invalid: DNS lookup failed/);
    expect(run.stderr).toContain("tcoder.invalid");
    expect(run.code).toBe(1);
  });

  it("says TLS failed when https:// meets a server that does not speak it", async () => {
    const plain = createHttpServer((_req, res) => res.end("{}"));
    servers.push(plain);
    const address = await listening(plain);
    const run = await tcoderIn(["status", "--api", `https://${address}`, "--token", "t"]);
    expect(run.stderr).toBe(
      `tcoder: cannot reach the API at https://${address}: TLS error: the server does not speak TLS on that port (an http:// address?)\n`,
    );
    expect(run.code).toBe(1);
  });

  it("says the connection closed when the server hangs up without answering", async () => {
    const hangUp = createServer((socket) => socket.destroy());
    servers.push(hangUp);
    const address = await listening(hangUp);
    const run = await tcoderIn(["cancel", "job_x", "--api", `http://${address}`, "--token", "t"]);
    expect(run.stderr).toBe(
      `tcoder: cannot reach the API at http://${address}: the connection was closed before an answer came\n`,
    );
    expect(run.code).toBe(1);
  });

  it("says a request timed out when its time limit passed without an answer", async () => {
    const silent = createServer(() => {});
    servers.push(silent);
    const target = new URL(`http://${await listening(silent)}/v1/stats`);
    const error = await fetch(target, { signal: AbortSignal.timeout(200) }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(whyNoAnswer(error, target)).toBe("no answer before the time limit (timed out)");
  });

  it("says a server that answers something other than the API is not tcoder's API", async () => {
    const web = createHttpServer((_req, res) => {
      res.writeHead(502, { "content-type": "text/html" });
      res.end("<html>bad gateway</html>");
    });
    servers.push(web);
    const address = await listening(web);
    const run = await tcoderIn(["jobs", "--api", `http://${address}`, "--token", "t"]);
    expect(run.stderr).toBe(
      `tcoder: http://${address} answered GET /v1/jobs?limit=20 with HTTP 502 and text/html, not tcoder's JSON: is it a tcoder API?\n`,
    );
    expect(run.code).toBe(1);
  });
});

describe("a real API that refuses the token", () => {
  let fault: FaultStack;
  beforeAll(async () => {
    fault = await startFaultStack("cli-token");
  }, 180_000);
  afterAll(async () => {
    await fault?.stop();
  });

  it("says the token was refused, for every command that talks to the API", async () => {
    const api = fault.stack.cloud.apiUrl;
    const file = await clip();
    for (const args of [["transcode", file], ["status"], ["jobs"], ["cancel", "job_x"]]) {
      const run = await tcoderIn([...args, "--api", api, "--token", "not-the-token"]);
      expect(run.stderr, args.join(" ")).toBe(
        `tcoder: the API at ${api} refused the token (401 unauthorized): pass its token with --token or TCODER_API_TOKEN\n`,
      );
      expect(run.code, args.join(" ")).toBe(1);
      expectNothingStarted(run);
    }
  });

  it("answers with the right token, and shows the refusal's stack trace only with --verbose", async () => {
    const api = fault.stack.cloud.apiUrl;
    const ok = await tcoderIn(["status", "--api", api, "--token", fault.stack.cloud.apiToken]);
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout)).toHaveProperty("maxMachines");

    const verbose = await tcoderIn(["status", "--api", api, "--token", "not-the-token", "--verbose"]);
    expect(verbose.stderr.split("\n")[0]).toContain("refused the token (401 unauthorized)");
    expect(verbose.stderr).toMatch(stackLine);
    expect(verbose.code).toBe(1);
  });
});
