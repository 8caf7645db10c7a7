/**
 * The machine program as the image runs it: machine-image/src bundled into one `main.js` by the
 * same build the Dockerfile runs (`buildMachineBundle`). Process-runner machines run it, so they
 * boot what ships, and boot without loading a TypeScript compiler first (about half a second of a
 * cold machine's start). Bundles are cached under the build cache, keyed by the sources they are
 * made from, so a stack start rebuilds only after an edit.
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdir, readdir, readFile, rename, rm, stat, utimes } from "node:fs/promises";
import { join, relative } from "node:path";
import { buildMachineBundle } from "@tcoder/machine-image/build";
import { cacheDir } from "./machine-image.ts";

/** What the bundle is made of: the machine's sources, the contract it imports, the locked deps. */
const inputRoots = (repoRoot: string) => [
  join(repoRoot, "machine-image", "src"),
  join(repoRoot, "worker", "src"),
  join(repoRoot, "package-lock.json"),
];

/** Bundles nobody started a machine from for this long are removed when a new one is built. */
const UNUSED_BUNDLE_MS = 24 * 60 * 60 * 1000;

/** Where the bundles are kept, one directory per set of sources. */
export const machineBundleRoot = () => join(cacheDir(), "machine-bundle");

/** The path of a bundle of the current sources, built if there is none yet. */
export async function ensureMachineBundle(repoRoot: string): Promise<string> {
  const key = await sourcesKey(repoRoot);
  const root = machineBundleRoot();
  const dir = join(root, key);
  const main = join(dir, "main.js");
  if (await exists(main)) {
    const now = new Date();
    await utimes(dir, now, now).catch(() => {});
    return main;
  }
  // Built beside and renamed into place: a concurrent stack start sees no bundle or a whole one.
  const building = join(root, `.${key}-${randomBytes(4).toString("hex")}`);
  await buildMachineBundle(join(building, "main.js"));
  await mkdir(root, { recursive: true });
  await rename(building, dir).catch(async (error: NodeJS.ErrnoException) => {
    // Another start built the same sources first; theirs is as good.
    await rm(building, { recursive: true, force: true });
    if (error.code !== "ENOTEMPTY" && error.code !== "EEXIST") throw error;
  });
  await removeUnusedBundles(root, key);
  return main;
}

async function sourcesKey(repoRoot: string): Promise<string> {
  const digest = createHash("sha256");
  const add = async (path: string): Promise<void> => {
    const info = await stat(path).catch(() => null);
    if (!info) return;
    if (info.isDirectory()) {
      for (const entry of (await readdir(path)).sort()) await add(join(path, entry));
      return;
    }
    digest.update(`${relative(repoRoot, path)}\0`);
    digest.update(await readFile(path));
    digest.update("\0");
  };
  for (const path of inputRoots(repoRoot)) await add(path);
  return digest.digest("hex").slice(0, 24);
}

async function removeUnusedBundles(root: string, keep: string) {
  const cutoff = Date.now() - UNUSED_BUNDLE_MS;
  for (const entry of await readdir(root).catch(() => [] as string[])) {
    if (entry === keep) continue;
    const info = await stat(join(root, entry)).catch(() => null);
    if (info && info.mtimeMs < cutoff) await rm(join(root, entry), { recursive: true, force: true });
  }
}

const exists = (path: string) =>
  stat(path).then(
    () => true,
    () => false,
  );
