/** Bundles the machine program for Node 20 into dist/main.js (what the Dockerfile copies). */
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

export async function buildMachineBundle(outfile = join(root, "dist", "main.js")): Promise<{ path: string }> {
  await build({
    entryPoints: [join(root, "src", "main.ts")],
    outfile,
    bundle: true,
    platform: "node",
    target: "node20",
    format: "esm",
    minify: true,
    // Readable names in stack traces; the source map (node --enable-source-maps) does the rest.
    keepNames: true,
    sourcemap: "linked",
    legalComments: "none",
    // Some AWS SDK dependencies still call require() for Node built-ins from ESM.
    banner: {
      js: "import { createRequire as __tcoderCreateRequire } from 'node:module'; const require = __tcoderCreateRequire(import.meta.url);",
    },
    logLevel: "warning",
  });
  return { path: outfile };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { path } = await buildMachineBundle();
  console.log(`built ${path}`);
}
