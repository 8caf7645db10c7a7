/**
 * The Dockerfile's promises checked as text, with a message that names what is missing: `npm ci` in
 * the builder needs every workspace's manifest. The real build and a start of the image run in
 * stacks/local/test/e2e/machine-image.test.ts (podman).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

const repoRoot = join(import.meta.dirname, "..", "..");
const dockerfile = readFileSync(join(repoRoot, "machine-image", "Dockerfile"), "utf8");
const copied = [...dockerfile.matchAll(/^COPY (?!--from)(.+) \S+$/gm)].flatMap((m) => (m[1] ?? "").split(/\s+/));

describe("machine-image/Dockerfile", () => {
  it("copies the manifest of every npm workspace, so npm ci matches the lockfile", () => {
    const { workspaces } = JSON.parse(readFileSync(join(repoRoot, "package.json"), "utf8")) as { workspaces: string[] };
    for (const workspace of workspaces) expect(copied).toContain(`${workspace}/package.json`);
    expect(copied).toContain("package-lock.json");
  });

  it("runs as a non-root user with Debian's ffmpeg", () => {
    expect(dockerfile).toMatch(/apt-get install[^\n]*ffmpeg/);
    expect(dockerfile).toMatch(/^USER (?!root)\w+/m);
  });
});
