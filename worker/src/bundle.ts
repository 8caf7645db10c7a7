/**
 * Builds the worker into one ES module for workerd (Cloudflare, and Miniflare in stacks/local).
 * `npm run build -w @tcoder/worker` runs this file; infra and the local cloud call
 * `buildWorkerBundle()` and deploy/load the returned path, identified by its sha256.
 */
import { createHash } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { build } from "esbuild";
import { buildConsole } from "../console/build.ts";

const workerRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..");

export interface WorkerBundle {
  /** Absolute path of the bundled module. */
  path: string;
  /** sha256 (hex) of the bundle's bytes. */
  hash: string;
}

export async function buildWorkerBundle(opts: { outDir?: string } = {}): Promise<WorkerBundle> {
  const outDir = resolve(opts.outDir ?? join(workerRoot, "dist"));
  const outfile = join(outDir, "worker.js");
  const result = await build({
    entryPoints: [join(workerRoot, "src", "index.ts")],
    outfile,
    bundle: true,
    format: "esm",
    platform: "neutral",
    mainFields: ["module", "main"],
    conditions: ["workerd", "worker", "browser", "import"],
    target: "es2022",
    minify: false,
    sourcemap: "inline",
    legalComments: "none",
    // The web console, inlined (routes/console.ts): it ships wherever the worker does.
    define: { __TCODER_CONSOLE__: JSON.stringify(await buildConsole()) },
    write: false,
    logLevel: "silent",
  });
  const output = result.outputFiles.find((file) => file.path === outfile);
  if (!output) throw new Error(`esbuild produced no ${outfile}`);
  const imports = [...output.text.matchAll(/^import .* from "(node:[^"]+)"/gm)].map((m) => m[1]);
  if (imports.length > 0) throw new Error(`the worker bundle imports Node built-ins: ${imports.join(", ")}`);
  await mkdir(outDir, { recursive: true });
  await writeFile(outfile, output.contents);
  return { path: outfile, hash: createHash("sha256").update(output.contents).digest("hex") };
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  const bundle = await buildWorkerBundle();
  console.log(JSON.stringify(bundle));
}
