#!/usr/bin/env node
// Installs what a fresh Debian machine lacks before anything that needs it runs.
// Plain Node, no dependencies: it runs before `npm ci` has.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
// `--for image` adds what `npm run image:build` needs to build the machine image and run it as
// containers (podman with runc, and debootstrap for the local base image); `--for test` adds that
// too (the container-runner tests), Chromium for the web console's browser test, and Go, which
// builds the Pulumi engine the infra tests run (infra/toolchain/build.sh, cached by version).
const args = process.argv.slice(2);
const purpose =
  args.find((arg) => arg.startsWith("--for="))?.slice("--for=".length) ??
  (args.includes("--for") ? args[args.indexOf("--for") + 1] : undefined);
const forTest = purpose === "test";
const forImage = forTest || purpose === "image";
const systemPackages = {
  ffmpeg: "ffmpeg",
  ffprobe: "ffmpeg",
  "redis-server": "redis-server",
  // The local Fly API pins machines to their guest.cpus cores with it; Essential in Debian, but
  // minimal images may leave it out.
  taskset: "util-linux",
  ...(forImage ? { podman: "podman", runc: "runc", catatonit: "catatonit", debootstrap: "debootstrap" } : {}),
  ...(forTest ? { chromium: "chromium", go: "golang-go" } : {}),
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
if (forTest) {
  // Stdout carries only the toolchain's path; progress and timings go to stderr.
  execFileSync("bash", [join(root, "infra", "toolchain", "build.sh")], { stdio: ["ignore", "ignore", "inherit"] });
}
