import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { createEngine, type Engine, ensureToolchain, repoRoot } from "../../toolchain/engine.ts";
import { checkoutOf, setConfig } from "./support.ts";

// The policy pack enforced by the engine itself (`--policy-pack`), not only called in-process:
// the engine starts the pack through the Node.js language host and refuses a mandatory violation.
const policyPack = join(repoRoot, "infra", "policy");
let engine: Engine;
let checkout: ReturnType<typeof checkoutOf>;

beforeAll(async () => {
  engine = createEngine(ensureToolchain());
  checkout = checkoutOf("fly-app");
  await engine.pulumi(["stack", "init", "policy"], { cwd: checkout.dir });
  // Previews only: nothing listens here, and nothing needs to.
  await setConfig(
    engine,
    checkout.dir,
    "policy",
    { orgSlug: "personal", apiBaseUrl: "http://127.0.0.1:9" },
    { apiToken: "fly-token-not-used" },
  );
}, 900_000);

afterAll(() => {
  checkout?.remove();
  engine?.dispose();
});

async function previewWithPack(appName: string, packConfig?: Record<string, unknown>) {
  await setConfig(engine, checkout.dir, "policy", { appName });
  const args = ["preview", "--stack", "policy", "--policy-pack", policyPack];
  if (packConfig) {
    const file = join(checkout.dir, "policy-config.json");
    writeFileSync(file, JSON.stringify(packConfig));
    args.push("--policy-pack-config", file);
  }
  return engine.pulumi(args, { cwd: checkout.dir });
}

describe("the tcoder policy pack inside pulumi preview", { timeout: 120_000 }, () => {
  test("a compliant program previews; the pack ran (its advisory stack policy reports)", async () => {
    const result = await previewWithPack("tcoder-policy-machines");
    expect(result.code, result.stdout + result.stderr).toBe(0);
    expect(result.stdout).toMatch(/tcoder@v0\.1\.0/);
    expect(result.stdout).toMatch(/\[advisory\]\s+stack-tags/);
    expect(result.stdout).not.toMatch(/naming-convention/);
  });

  test("a mandatory violation is refused by the engine", async () => {
    const result = await previewWithPack("acme-machines", { "naming-convention": "mandatory" });
    expect(result.code).not.toBe(0);
    expect(result.stdout).toMatch(/\[mandatory\]\s+naming-convention/);
    expect(result.stdout).toContain("name acme-machines does not match");
  });

  test("the same violation at the pack's own advisory level warns and previews", async () => {
    const result = await previewWithPack("acme-machines");
    expect(result.code, result.stdout + result.stderr).toBe(0);
    expect(result.stdout).toMatch(/\[advisory\]\s+naming-convention/);
  });
});
