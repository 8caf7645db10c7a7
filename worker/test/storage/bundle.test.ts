import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { buildWorkerBundle } from "../../src/bundle.ts";

const dirs: string[] = [];
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

describe("buildWorkerBundle", () => {
  it("writes one ES module without Node built-in imports and returns its sha256", async () => {
    const outDir = await mkdtemp(join(tmpdir(), "tcoder-bundle-"));
    dirs.push(outDir);
    const bundle = await buildWorkerBundle({ outDir });
    expect(bundle.path).toBe(join(outDir, "worker.js"));
    const bytes = await readFile(bundle.path);
    expect(bundle.hash).toBe(createHash("sha256").update(bytes).digest("hex"));
    const text = bytes.toString("utf8");
    expect(text).toMatch(/export\s*{[^}]*\bdefault\b/);
    expect(text).not.toMatch(/from\s*["']node:/);
    expect(text).not.toMatch(/require\(["']node:/);
  });

  it("is reproducible: the same sources give the same hash", async () => {
    const outDir = await mkdtemp(join(tmpdir(), "tcoder-bundle-"));
    dirs.push(outDir);
    expect((await buildWorkerBundle({ outDir })).hash).toBe((await buildWorkerBundle({ outDir })).hash);
  });
});
