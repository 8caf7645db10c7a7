/**
 * Rolling the API key on the local stack the way an operator does in the cloud: API_TOKEN holds the
 * old and the new token (both work, each request's log line names its key by fingerprint), then
 * the old one is removed and the worker redeployed (the old token is refused, the new one works).
 */
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LocalStack, startLocalStack } from "../../src/stack.ts";

const OLD = "old-local-api-token-0123456789abcdef";
const NEW = "new-local-api-token-fedcba9876543210";
const fingerprint = (token: string) => createHash("sha256").update(token).digest("hex").slice(0, 8);

describe("API key rotation on the local stack", () => {
  let dir: string;
  let stack: LocalStack | undefined;
  const lines: string[] = [];

  /** Starts the stack in `dir` with API_TOKEN set as given (the stack keeps secrets in secrets.json). */
  const startWith = async (apiToken: string) => {
    const secretsPath = join(dir, "secrets.json");
    const stored = JSON.parse(await readFile(secretsPath, "utf8").catch(() => "{}")) as Record<string, string>;
    await writeFile(secretsPath, JSON.stringify({ ...stored, API_TOKEN: apiToken }));
    stack = await startLocalStack({ dir, log: (source, line) => source === "api" && lines.push(line) });
    return stack.cloud.apiUrl;
  };
  const statsWith = (api: string, token: string) =>
    fetch(`${api}/v1/stats`, { headers: { authorization: `Bearer ${token}` } }).then((res) => res.status);

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "tcoder-key-rotation-"));
  });
  afterAll(async () => {
    await stack?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it("accepts both tokens during the rotation and logs which key each request used", async () => {
    const api = await startWith(`${OLD},${NEW}`);
    expect(stack?.cloud.apiToken).toBe(OLD);
    expect(await statsWith(api, OLD)).toBe(200);
    expect(await statsWith(api, NEW)).toBe(200);
    expect(await statsWith(api, "some-other-token-0123456789")).toBe(401);
    await expect
      .poll(() =>
        lines
          .map((line) => JSON.parse(line) as { path?: string; status?: number; key?: string })
          .filter((entry) => entry.path === "/v1/stats")
          .map((entry) => [entry.status, entry.key]),
      )
      .toEqual([
        [200, fingerprint(OLD)],
        [200, fingerprint(NEW)],
        [401, undefined],
      ]);
    for (const token of [OLD, NEW]) expect(lines.join("\n")).not.toContain(token);
  });

  it("refuses the old token once it is removed from API_TOKEN", async () => {
    await stack?.stop();
    const api = await startWith(NEW);
    expect(await statsWith(api, OLD)).toBe(401);
    expect(await statsWith(api, NEW)).toBe(200);
  });
});
