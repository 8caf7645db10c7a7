/** The browser entry stays browser-safe and light: no Node built-ins, no zod. */
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { describe, expect, it } from "vitest";

const src = join(dirname(fileURLToPath(import.meta.url)), "..", "src");

describe("@tcoder/client in a browser bundle", () => {
  it("bundles for the browser platform without Node built-ins or the contract's zod schemas", async () => {
    const result = await build({
      entryPoints: [join(src, "index.ts")],
      bundle: true,
      platform: "browser",
      format: "esm",
      write: false,
      metafile: true,
      logLevel: "silent",
    });
    const inputs = Object.keys(result.metafile.inputs);
    expect(inputs.filter((path) => path.includes("node_modules/"))).toEqual([]);
    expect(inputs.some((path) => path.endsWith("node.ts"))).toBe(false);
    expect(result.outputFiles[0]?.text).not.toMatch(/["']node:/);
  });

  it("fails loudly when the Node entry is bundled for a browser", async () => {
    await expect(
      build({
        entryPoints: [join(src, "node.ts")],
        bundle: true,
        platform: "browser",
        write: false,
        logLevel: "silent",
      }),
    ).rejects.toThrow(/node:fs/);
  });
});
