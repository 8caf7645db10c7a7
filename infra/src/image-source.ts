import { createHash } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative, sep } from "node:path";

/**
 * What the machine image is built from, relative to the repo root: exactly what
 * `machine-image/Dockerfile` copies (manifests and lockfile for `npm ci`, the machine's sources and
 * the worker modules it imports), plus the Dockerfile itself. Keep in step with its COPY lines.
 */
export const imageSourcePaths = [
  "machine-image/Dockerfile",
  "machine-image/Dockerfile.dockerignore",
  "machine-image/package.json",
  "machine-image/src",
  "worker/src/bindings.ts",
  "worker/src/contract",
  "worker/src/state",
  "package.json",
  "package-lock.json",
  "tsconfig.json",
  "worker/package.json",
  "stacks/local/package.json",
  "stacks/cloud/package.json",
  "infra/package.json",
  "worker/client/package.json",
] as const;

// The same directories Dockerfile.dockerignore leaves out.
const skipped = new Set(["node_modules", "dist", "test", "bench", ".tcoder", "coverage"]);

/** SHA-256 over every source file's path and bytes, in path order; missing paths count as empty. */
export function imageSourceHash(repoRoot: string, paths: readonly string[] = imageSourcePaths): string {
  const hash = createHash("sha256");
  const files = paths.flatMap((p) => listFiles(join(repoRoot, p))).sort();
  for (const file of files) {
    hash.update(relative(repoRoot, file).split(sep).join("/"));
    hash.update("\0");
    hash.update(readFileSync(file));
    hash.update("\0");
  }
  return hash.digest("hex");
}

function listFiles(path: string): string[] {
  let stats: ReturnType<typeof statSync>;
  try {
    stats = statSync(path);
  } catch {
    return [];
  }
  if (stats.isFile()) return [path];
  return readdirSync(path, { withFileTypes: true })
    .filter((entry) => !skipped.has(entry.name))
    .flatMap((entry) => listFiles(join(path, entry.name)));
}
