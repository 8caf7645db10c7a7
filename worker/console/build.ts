/**
 * Builds the web console into two strings the worker serves from its own bundle: the page and one
 * ES module (the console, the SDK and hls.js). `buildWorkerBundle()` inlines them, so the console
 * ships wherever the worker does (workerd locally, Workers in the cloud) with no asset binding.
 */
import { readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const consoleRoot = dirname(fileURLToPath(import.meta.url));

export interface ConsoleAssets {
  html: string;
  js: string;
}

export async function buildConsole(): Promise<ConsoleAssets> {
  const result = await build({
    entryPoints: [join(consoleRoot, "src", "main.ts")],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: ["chrome110", "firefox110", "safari16"],
    minify: true,
    legalComments: "none",
    write: false,
    logLevel: "silent",
  });
  const js = result.outputFiles[0]?.text;
  if (js === undefined) throw new Error("esbuild produced no console bundle");
  if (/\bfrom\s*["']node:/.test(js)) throw new Error("the console bundle imports Node built-ins");
  return { html: await readFile(join(consoleRoot, "index.html"), "utf8"), js };
}
