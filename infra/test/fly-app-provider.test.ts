import { createRequire } from "node:module";
import * as pulumi from "@pulumi/pulumi";
import { type LocalFlyApi, startFlyApi } from "@tcoder/local/fly-api";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { type FlyAppProviderInputs, type FlyAppProviderOutputs, flyAppProvider } from "../src/fly-app.ts";

// Under setMocks Pulumi never calls a dynamic provider, so these tests call it directly,
// against the local Fly Machines API (same paths and JSON as api.machines.dev).
let fly: LocalFlyApi;
const token = "fly-test-token";

beforeAll(async () => {
  fly = await startFlyApi({ token });
});
afterAll(async () => {
  await fly?.stop();
});

const inputsFor = (name: string, overrides: Partial<FlyAppProviderInputs> = {}): FlyAppProviderInputs => ({
  name,
  orgSlug: "personal",
  apiBaseUrl: fly.url,
  apiToken: token,
  ...overrides,
});

describe("Fly app dynamic provider against the local Fly API", () => {
  const provider = flyAppProvider();

  test("create makes the app, read finds it, delete removes it, and a second delete is a no-op", async () => {
    const inputs = inputsFor("tcoder-test-lifecycle");
    const created = await provider.create(inputs);
    expect(created.id).toBe("tcoder-test-lifecycle");
    expect(created.outs).toMatchObject({
      name: "tcoder-test-lifecycle",
      orgSlug: "personal",
      appId: expect.any(String),
    });
    expect(fly.calls()["POST /v1/apps"]).toBeGreaterThanOrEqual(1);

    const read = await provider.read?.(created.id, created.outs);
    expect(read).toEqual({ id: created.id, props: created.outs });

    await provider.delete?.(created.id, created.outs as FlyAppProviderOutputs);
    expect(await provider.read?.(created.id, created.outs)).toEqual({ id: "" });
    await expect(provider.delete?.(created.id, created.outs as FlyAppProviderOutputs)).resolves.toBeUndefined();
  });

  test("a rerun after a partial failure adopts the app it already created in the same org", async () => {
    const inputs = inputsFor("tcoder-test-rerun");
    const first = await provider.create(inputs);
    const posts = fly.calls()["POST /v1/apps"] ?? 0;
    // The state write of the first run was lost: the engine creates again.
    const again = await provider.create(inputs);
    expect(fly.calls()["POST /v1/apps"]).toBe(posts + 1);
    expect(again).toEqual(first);
  });

  test("a name taken in another org fails with the status and what to change", async () => {
    await provider.create(inputsFor("tcoder-test-taken", { orgSlug: "someone-else" }));
    await expect(provider.create(inputsFor("tcoder-test-taken"))).rejects.toThrow(/HTTP 422.*tcoder:flyAppName/);
  });

  test("a wrong token fails with 401 and names the config key", async () => {
    await expect(provider.create(inputsFor("tcoder-test-denied", { apiToken: "wrong" }))).rejects.toThrow(
      /HTTP 401.*tcoder:flyApiToken/,
    );
  });

  test("diff replaces on name or org (freeing the global name first when it stays) and updates in place on endpoint or token", async () => {
    const olds = { ...inputsFor("tcoder-a"), appId: "id", status: "deployed" };
    const diff = provider.diff;
    if (!diff) throw new Error("provider has no diff");
    expect(await diff("tcoder-a", olds, inputsFor("tcoder-b"))).toEqual({
      changes: true,
      replaces: ["name"],
      deleteBeforeReplace: false,
    });
    expect(await diff("tcoder-a", olds, inputsFor("tcoder-a", { orgSlug: "acme" }))).toMatchObject({
      changes: true,
      replaces: ["orgSlug"],
      deleteBeforeReplace: true,
    });
    expect(await diff("tcoder-a", olds, inputsFor("tcoder-a", { apiToken: "rotated" }))).toEqual({
      changes: true,
      replaces: [],
      deleteBeforeReplace: false,
    });
    expect(await diff("tcoder-a", olds, inputsFor("tcoder-a"))).toMatchObject({ changes: false, replaces: [] });
  });

  test("check rejects names Fly would refuse", async () => {
    const result = await provider.check?.(inputsFor("x"), inputsFor("Bad_Name"));
    expect(result?.failures).toEqual([
      { property: "name", reason: "Fly app names are 2-63 lowercase letters, digits or dashes" },
    ]);
  });

  test("the provider still works after Pulumi serializes it into the state file", async () => {
    const provider = flyAppProvider();
    const serialized = await pulumi.runtime.serializeFunction(() => provider);
    const module = { exports: {} as Record<string, () => pulumi.dynamic.ResourceProvider> };
    const load = new Function("exports", "require", "module", serialized.text);
    load(module.exports, createRequire(import.meta.url), module);
    const revived = module.exports[serialized.exportName]?.();
    if (!revived) throw new Error("serialized provider did not load");

    const created = await revived.create(inputsFor("tcoder-test-revived"));
    expect(created.id).toBe("tcoder-test-revived");
    await revived.delete?.(created.id, created.outs);
    expect(fly.calls()["DELETE /v1/apps/{app}"]).toBeGreaterThanOrEqual(1);
  });
});
