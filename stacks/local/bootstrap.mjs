#!/usr/bin/env node
// Installs what a fresh Debian machine lacks before anything that needs it runs.
// Plain Node, no dependencies: it runs before `npm ci` has.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
// `--for test` adds what only the test suite needs: Chromium for the web console's browser test.
const args = process.argv.slice(2);
const forTest = args.includes("--for=test") || (args.includes("--for") && args[args.indexOf("--for") + 1] === "test");
const systemPackages = {
  ffmpeg: "ffmpeg",
  ffprobe: "ffmpeg",
  "redis-server": "redis-server",
  ...(forTest ? { chromium: "chromium" } : {}),
};

const onPath = (cmd) => spawnSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" }).status === 0;
const run = (cmd, args) =>
  execFileSync(cmd, args, { stdio: "inherit", cwd: root, env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } });

const missing = [
  ...new Set(
    Object.entries(systemPackages)
      .filter(([cmd]) => !onPath(cmd))
      .map(([, pkg]) => pkg),
  ),
];
if (missing.length > 0) {
  if (process.getuid?.() !== 0) {
    console.error(
      `tcoder needs these Debian packages: ${missing.join(" ")}\n  sudo apt-get install -y ${missing.join(" ")}`,
    );
    process.exit(1);
  }
  console.error(`[bootstrap] installing ${missing.join(" ")} with apt-get`);
  run("apt-get", ["update", "-qq"]);
  run("apt-get", ["install", "-y", "-qq", "--no-install-recommends", ...missing]);
}
// npm keeps its own copy of the lockfile in node_modules; an older one means a pull changed the deps.
const installed = join(root, "node_modules", ".package-lock.json");
const lockfile = join(root, "package-lock.json");
if (!existsSync(installed) || statSync(lockfile).mtimeMs > statSync(installed).mtimeMs) {
  console.error("[bootstrap] installing npm dependencies (npm ci)");
  run("npm", ["ci", "--no-audit", "--no-fund"]);
}
