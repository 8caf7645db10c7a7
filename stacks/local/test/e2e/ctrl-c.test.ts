/**
 * `tcoder up` stops everything it started on Ctrl-C: redis-server, workerd and machine processes
 * all exit with it, and the stack's announcement file is removed.
 */
import { spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { machineBundleRoot } from "../../src/services/machine-bundle.ts";
import { repoRoot } from "../../src/stack.ts";
import { makeClip } from "./clips.ts";

const tcoder = join(repoRoot, "stacks", "local", "bin", "tcoder.mjs");

/** Every live descendant of `pid`, read from /proc. */
function descendants(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
    } catch {
      // Gone while we looked.
    }
  }
  const found: number[] = [];
  const walk = (parent: number) => {
    for (const child of children.get(parent) ?? []) {
      found.push(child);
      walk(child);
    }
  };
  walk(pid);
  return found;
}

/** The kernel's start time of a process (stat field 22): tells a process from a later one given the same pid. */
function startTime(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return fields[0] === "Z" ? null : (fields[19] ?? null);
  } catch {
    return null;
  }
}

let dir: string;
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Runs `tcoder up …` until its stderr matches `ready`; the caller stops it. */
async function startUp(args: string[], ready: RegExp) {
  const child = spawn(process.execPath, [tcoder, "up", ...args], {
    cwd: repoRoot,
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const deadline = Date.now() + 120_000;
  while (!ready.test(stderr) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
  expect(stderr).toMatch(ready);
  return { child, exited, stderr: () => stderr };
}

it("stops redis, workerd and a machine mid-job on Ctrl-C and leaves no process behind", async () => {
  dir = await mkdtemp(join(tmpdir(), "tcoder-ctrlc-"));
  const state = join(dir, "state");
  const clip = await makeClip(join(dir, "clip.mp4"), { seconds: 6, size: "640x360" });
  // Interrupt while a machine works on the job.
  const up = await startUp(["--demo", "--sample", clip, "--dir", state, "--fresh"], /\[machine \w+\] claimed/);
  expect(existsSync(join(state, "stack.json"))).toBe(true);

  const started = descendants(up.child.pid ?? -1);
  const startedAt = new Map(started.map((pid) => [pid, startTime(pid)]));
  const commands = started.map((pid) => readFileSync(`/proc/${pid}/cmdline`, "utf8"));
  expect(commands.some((cmd) => cmd.startsWith("redis-server"))).toBe(true);
  expect(commands.some((cmd) => cmd.includes("workerd"))).toBe(true);
  // A machine runs the machine program's bundle.
  expect(commands.some((cmd) => cmd.includes(machineBundleRoot()))).toBe(true);

  up.child.kill("SIGINT");
  // 130: interrupted before the demo job finished.
  expect(await up.exited).toBe(130);
  expect(up.stderr()).toContain("stopping the local stack");
  expect(existsSync(join(state, "stack.json"))).toBe(false);
  // Orphans would have been re-parented, so check the processes themselves, not the tree. A child
  // killed as its parent exits may take a moment to be reaped; an orphan would still be there.
  const commandOf = new Map(started.map((pid, i) => [pid, commands[i]?.replaceAll("\0", " ").trim()]));
  const alive = (pid: number) => startTime(pid) !== null && startTime(pid) === startedAt.get(pid);
  let leftBehind = started.filter(alive);
  for (let waited = 0; leftBehind.length > 0 && waited < 5_000; waited += 100) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    leftBehind = leftBehind.filter(alive);
  }
  expect(leftBehind.map((pid) => `${pid} ${commandOf.get(pid)}`)).toEqual([]);
}, 180_000);

it("tcoder down stops the stack running from a directory", async () => {
  const state = join(dir, "down-state");
  const up = await startUp(["--dir", state, "--fresh"], /serving until Ctrl-C/);
  const down = spawn(process.execPath, [tcoder, "down", "--dir", state], { cwd: repoRoot, stdio: "ignore" });
  const downCode = await new Promise<number | null>((resolve) => down.once("exit", (code) => resolve(code)));
  expect(downCode).toBe(0);
  expect(await up.exited).toBe(0);
  expect(existsSync(join(state, "stack.json"))).toBe(false);
}, 180_000);
