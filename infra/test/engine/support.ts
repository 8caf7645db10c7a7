import { cpSync, mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { type Engine, type PulumiResult, repoRoot } from "../../toolchain/engine.ts";

/**
 * A copy of a fixture program in a folder of its own (as another checkout would have it), inside
 * the repo so it resolves the workspace's node_modules.
 */
export function checkoutOf(fixture: string): { dir: string; remove(): void } {
  const dir = mkdtempSync(join(repoRoot, "infra", ".engine-"));
  cpSync(join(repoRoot, "infra", "test", "fixtures", fixture), dir, { recursive: true });
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Fails with the engine's own output when a command did not exit 0. */
export function succeeded(result: PulumiResult): string {
  if (result.code !== 0) throw new Error(`pulumi exited ${result.code}\n${result.stdout}\n${result.stderr}`);
  return result.stdout;
}

export async function setConfig(
  engine: Engine,
  cwd: string,
  stack: string,
  values: Record<string, string>,
  secrets: Record<string, string> = {},
): Promise<void> {
  for (const [key, value] of Object.entries(values)) {
    succeeded(await engine.pulumi(["config", "set", key, value, "--stack", stack], { cwd }));
  }
  // Secret values go through stdin, as they should on any command line.
  for (const [key, value] of Object.entries(secrets)) {
    succeeded(await engine.pulumi(["config", "set", "--secret", key, "--stack", stack], { cwd, input: value }));
  }
}
