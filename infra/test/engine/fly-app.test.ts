import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type LocalFlyApi, startFlyApi } from "@tcoder/local/fly-api";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { createEngine, type Engine, ensureToolchain } from "../../toolchain/engine.ts";
import { checkoutOf, setConfig, succeeded } from "./support.ts";

// The real Pulumi engine (CLI, Node.js language host, dynamic-provider launcher built from Go
// modules) drives tcoder's Fly app provider against the local Fly Machines API: what `pulumi up`
// does in the cloud, minus the cloud.
const token = "fly-engine-token-0123456789";
const stack = "engine";
const appName = "tcoder-engine-machines";

let fly: LocalFlyApi;
let engine: Engine;
let checkout: ReturnType<typeof checkoutOf>;
let elsewhere: ReturnType<typeof checkoutOf>;

const pulumi = (args: string[], cwd = checkout.dir) => engine.pulumi([...args, "--stack", stack], { cwd });

async function flyApp(name: string): Promise<{ status: number; org?: string }> {
  const response = await fetch(`${fly.url}/v1/apps/${name}`, { headers: { authorization: `Bearer ${token}` } });
  if (response.status !== 200) return { status: response.status };
  const app = (await response.json()) as { organization?: { slug?: string } };
  return { status: 200, org: app.organization?.slug };
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? filesUnder(path) : [path];
  });
}

beforeAll(async () => {
  const bin = ensureToolchain();
  fly = await startFlyApi({ token });
  engine = createEngine(bin);
  checkout = checkoutOf("fly-app");
  elsewhere = checkoutOf("fly-app");
  succeeded(await engine.pulumi(["stack", "init", stack], { cwd: checkout.dir }));
  await setConfig(
    engine,
    checkout.dir,
    stack,
    { appName, orgSlug: "personal", apiBaseUrl: fly.url },
    { apiToken: token },
  );
}, 900_000);

afterAll(async () => {
  await fly?.stop();
  checkout?.remove();
  elsewhere?.remove();
  engine?.dispose();
});

describe("the Fly app through the real Pulumi engine", { timeout: 120_000 }, () => {
  test("pulumi up creates the app in the configured org", async () => {
    const out = succeeded(await pulumi(["up", "--yes"]));
    expect(out).toMatch(/\+ 2 created/);
    expect(await flyApp(appName)).toEqual({ status: 200, org: "personal" });
  });

  test("a second pulumi up reports no changes", async () => {
    const out = succeeded(await pulumi(["up", "--yes", "--expect-no-changes"]));
    expect(out).toMatch(/2 unchanged/);
  });

  test("the same stack from another checkout path previews no changes", async () => {
    // Another clone of the repo: same stack and config, a different absolute path.
    const config = readFileSync(join(checkout.dir, `Pulumi.${stack}.yaml`), "utf8");
    writeFileSync(join(elsewhere.dir, `Pulumi.${stack}.yaml`), config);
    const out = succeeded(await pulumi(["preview", "--expect-no-changes", "--diff"], elsewhere.dir));
    expect(out).toMatch(/2 unchanged/);
  });

  test("a new API endpoint updates the app in place; a new org replaces it", async () => {
    await setConfig(engine, checkout.dir, stack, { apiBaseUrl: `${fly.url}/` });
    const updated = succeeded(await pulumi(["up", "--yes"]));
    expect(updated).toMatch(/~ 1 updated/);
    expect(updated).not.toMatch(/replaced/);

    await setConfig(engine, checkout.dir, stack, { orgSlug: "acme" });
    const replaced = succeeded(await pulumi(["up", "--yes"]));
    expect(replaced).toMatch(/\+-1 replaced/);
    expect(await flyApp(appName)).toEqual({ status: 200, org: "acme" });
  });

  test("pulumi refresh notices an app deleted outside Pulumi, and up recreates it", async () => {
    await fetch(`${fly.url}/v1/apps/${appName}`, { method: "DELETE", headers: { authorization: `Bearer ${token}` } });
    const refreshed = succeeded(await pulumi(["refresh", "--yes"]));
    expect(refreshed).toMatch(/- 1 deleted/);
    succeeded(await pulumi(["up", "--yes"]));
    expect(await flyApp(appName)).toEqual({ status: 200, org: "acme" });
  });

  test("the state file holds the Fly token only as ciphertext, and no checkout path", () => {
    const files = filesUnder(join(engine.backendDir, ".pulumi"));
    const state = files.filter((file) => file.endsWith(`${stack}.json`));
    expect(state.length).toBeGreaterThan(0);
    for (const file of files) {
      const text = readFileSync(file, "utf8");
      expect(text, file).not.toContain(token);
      expect(text, file).not.toContain(checkout.dir);
    }
    expect(readFileSync(state[0] as string, "utf8")).toContain("ciphertext");
  });

  test("pulumi destroy deletes the app", async () => {
    const out = succeeded(await pulumi(["destroy", "--yes"]));
    expect(out).toMatch(/- 2 deleted/);
    expect((await flyApp(appName)).status).toBe(404);
  });
});
