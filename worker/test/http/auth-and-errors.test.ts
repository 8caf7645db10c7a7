import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { app } from "../../src/app.ts";
import { SIGNATURE_HEADER, signPayload } from "../../src/contract/index.ts";
import { keyFingerprint } from "../../src/http/auth.ts";
import { API_TOKEN, type ControlPlaneServices, MACHINE_EVENTS_SECRET, startControlPlaneServices } from "./harness.ts";

let cp: ControlPlaneServices;
beforeAll(async () => {
  cp = await startControlPlaneServices();
});
afterAll(() => cp?.stop());

const problemOf = async (res: Response) => {
  expect(res.headers.get("content-type")).toBe("application/problem+json");
  const body = (await res.json()) as { type: string; title: string; status: number; detail: string; code: string };
  expect(body.status).toBe(res.status);
  expect(body.type).toBe(`urn:tcoder:problem:${body.code}`);
  expect(typeof body.title).toBe("string");
  expect(typeof body.detail).toBe("string");
  return body;
};

describe("secure headers (hono/secure-headers)", () => {
  it("mark the API's answers, refusals included, as not to be sniffed, framed or read cross-origin", async () => {
    for (const res of [await cp.request("/v1/stats"), await cp.request("/v1/stats", { token: null })]) {
      expect(res.headers.get("x-content-type-options")).toBe("nosniff");
      expect(res.headers.get("x-frame-options")).toBe("SAMEORIGIN");
      expect(res.headers.get("referrer-policy")).toBe("no-referrer");
      expect(res.headers.get("cross-origin-resource-policy")).toBe("same-origin");
    }
  });

  it("let players on other origins load playback URLs", async () => {
    // Refused (no playback token), and still loadable by the player to see that.
    const res = await cp.request("/v1/playback/job_x/1/hls/master.m3u8", { token: null });
    expect(res.status).toBe(403);
    expect(res.headers.get("cross-origin-resource-policy")).toBe("cross-origin");
    expect(res.headers.get("x-content-type-options")).toBe("nosniff");
  });
});

describe("bearer authentication on /v1", () => {
  it("refuses a request without a token with 401 unauthorized and WWW-Authenticate", async () => {
    const res = await cp.request("/v1/stats", { token: null });
    expect(res.status).toBe(401);
    expect(res.headers.get("www-authenticate")).toMatch(/^Bearer /);
    expect((await problemOf(res)).code).toBe("unauthorized");
  });

  it("refuses a wrong token", async () => {
    const res = await cp.request("/v1/stats", { token: "wrong-token-wrong-token-wrong" });
    expect(res.status).toBe(401);
    expect(res.headers.get("www-authenticate")).toContain('error="invalid_token"');
    expect((await problemOf(res)).code).toBe("unauthorized");
  });

  it("refuses a token that differs only in its last character", async () => {
    const last = API_TOKEN.at(-1) === "f" ? "e" : "f";
    const res = await cp.request("/v1/stats", { token: `${API_TOKEN.slice(0, -1)}${last}` });
    expect(res.status).toBe(401);
  });

  it("refuses the token as a prefix or with a suffix", async () => {
    expect((await cp.request("/v1/stats", { token: API_TOKEN.slice(0, -1) })).status).toBe(401);
    expect((await cp.request("/v1/stats", { token: `${API_TOKEN}x` })).status).toBe(401);
  });

  it("refuses other schemes carrying the right token", async () => {
    const res = await cp.request("/v1/stats", { token: null, headers: { authorization: `Basic ${API_TOKEN}` } });
    expect(res.status).toBe(401);
  });

  it("accepts the right token", async () => {
    expect((await cp.request("/v1/stats")).status).toBe(200);
  });

  it("answers 401, not 404, for unknown /v1 routes without a token (routes are not revealed)", async () => {
    expect((await cp.request("/v1/secret-admin", { token: null })).status).toBe(401);
  });

  it("does not ask for a bearer token on /healthz and /openapi.json", async () => {
    expect((await cp.request("/healthz", { token: null })).status).toBe(200);
    expect((await cp.request("/openapi.json", { token: null })).status).toBe(200);
  });
});

describe("API key rotation (several comma-separated tokens in API_TOKEN)", () => {
  const OLD = "old-api-token-0123456789abcdef";
  const NEW = "new-api-token-fedcba9876543210";
  const stats = (token: string, apiToken: string, extra: Record<string, string> = {}) =>
    app.request(
      "/v1/stats",
      { headers: { authorization: `Bearer ${token}` } },
      { ...cp.env, API_TOKEN: apiToken, ...extra },
    );

  it("accepts every listed token while both are configured", async () => {
    expect((await stats(OLD, `${OLD},${NEW}`)).status).toBe(200);
    expect((await stats(NEW, ` ${OLD} , ${NEW} `)).status).toBe(200);
  });

  it("refuses the old token once it is removed, and never accepts the list itself or a part of it", async () => {
    expect((await stats(OLD, NEW)).status).toBe(401);
    expect((await stats(NEW, NEW)).status).toBe(200);
    expect((await stats(`${OLD},${NEW}`, `${OLD},${NEW}`)).status).toBe(401);
    expect((await stats(OLD.slice(0, 10), `${OLD},${NEW}`)).status).toBe(401);
  });

  it("refuses to run with a listed token shorter than 16 characters (misconfigured, value not echoed)", async () => {
    const res = await stats(NEW, `${NEW},short-one`);
    expect(res.status).toBe(500);
    const body = await problemOf(res);
    expect(body.code).toBe("misconfigured");
    expect(body.detail).toContain("API_TOKEN");
    expect(body.detail).not.toContain("short-one");
  });

  it("names the key each request used by its fingerprint in the request log, never the token", async () => {
    const lines: string[] = [];
    const spy = vi.spyOn(console, "log").mockImplementation((...args: unknown[]) => void lines.push(args.join(" ")));
    try {
      for (const token of [OLD, NEW]) await stats(token, `${OLD},${NEW}`, { LOG_LEVEL: "info" });
    } finally {
      spy.mockRestore();
    }
    const keys = lines.map((line) => (JSON.parse(line) as { key?: string }).key);
    expect(keys).toEqual([await keyFingerprint(OLD), await keyFingerprint(NEW)]);
    expect(keys[0]).toMatch(/^[0-9a-f]{8}$/);
    expect(keys[0]).not.toBe(keys[1]);
    expect(lines.join("\n")).not.toContain(OLD);
    expect(lines.join("\n")).not.toContain(NEW);
  });
});

describe("problem responses", () => {
  it("unknown route → 404 not_found", async () => {
    const res = await cp.request("/v1/nothing-here");
    expect(res.status).toBe(404);
    expect((await problemOf(res)).code).toBe("not_found");
  });

  it("malformed JSON → 400 malformed_json", async () => {
    const res = await cp.request("/v1/uploads", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: '{"filename": "a.mp4",',
    });
    expect(res.status).toBe(400);
    expect((await problemOf(res)).code).toBe("malformed_json");
  });

  it("a body that is not JSON → 415 unsupported_media_type", async () => {
    const res = await cp.request("/v1/uploads", {
      method: "POST",
      headers: { "content-type": "text/plain" },
      body: "filename=a.mp4",
    });
    expect(res.status).toBe(415);
    expect((await problemOf(res)).code).toBe("unsupported_media_type");
  });

  it("schema violations → 400 invalid_request listing the zod issues", async () => {
    const res = await cp.request("/v1/uploads", { method: "POST", json: { filename: 7, size: -1 } });
    expect(res.status).toBe(400);
    const body = (await problemOf(res)) as unknown as { code: string; issues: { path: string[] }[] };
    expect(body.code).toBe("invalid_request");
    expect(body.issues.map((i) => i.path.join("."))).toEqual(
      expect.arrayContaining(["filename", "contentType", "size"]),
    );
  });

  it("an oversized body → 413 payload_too_large", async () => {
    const res = await cp.request("/v1/uploads", {
      method: "POST",
      json: { filename: "a.mp4", contentType: "video/mp4", size: 1, metadata: { pad: "x".repeat(200_000) } },
    });
    expect(res.status).toBe(413);
    expect((await problemOf(res)).code).toBe("payload_too_large");
  });

  it("a misconfigured env → 500 misconfigured naming the setting, never its value", async () => {
    const badUrl = "not-a-url-SECRET-VALUE";
    const logged: string[] = [];
    const spy = vi.spyOn(console, "error").mockImplementation((...args: unknown[]) => {
      logged.push(args.map(String).join(" "));
    });
    const res = await Promise.resolve(
      app.request(
        "/v1/stats",
        { headers: { authorization: `Bearer ${API_TOKEN}` } },
        { ...cp.env, S3_ENDPOINT: badUrl, MACHINE_EVENTS_SECRET: "short-secret" },
      ),
    ).finally(() => spy.mockRestore());
    expect(res.status).toBe(500);
    const text = await res.clone().text();
    for (const leaked of [badUrl, "short-secret"]) {
      expect(text).not.toContain(leaked);
      expect(logged.join("\n")).not.toContain(leaked);
    }
    const body = await problemOf(res);
    expect(body.code).toBe("misconfigured");
    expect(body.detail).toContain("S3_ENDPOINT");
    expect(body.detail).toContain("MACHINE_EVENTS_SECRET");
  });
});

describe("/openapi.json", () => {
  it("documents every route the app serves", async () => {
    const doc = (await (await cp.request("/openapi.json", { token: null })).json()) as {
      openapi: string;
      paths: Record<string, Record<string, unknown>>;
    };
    expect(doc.openapi).toBe("3.1.0");
    const documented = Object.entries(doc.paths).flatMap(([path, ops]) =>
      Object.keys(ops).map((method) => `${method.toUpperCase()} ${path}`),
    );
    const served = app.routes
      .filter((r) => r.method !== "ALL" && r.path !== "/openapi.json")
      // `:name` and `:name{regex}` (a parameter spanning segments) are both `{name}` in the document.
      .map((r) => `${r.method} ${r.path.replaceAll(/:([^/{]+)(\{[^}]*\})?/g, "{$1}")}`);
    expect(new Set(documented)).toEqual(new Set(served));
    expect(documented).toEqual(
      expect.arrayContaining([
        "GET /healthz",
        "POST /v1/uploads",
        "GET /v1/jobs",
        "POST /v1/jobs",
        "GET /v1/jobs/{id}",
        "POST /v1/jobs/{id}/cancel",
        "POST /v1/jobs/{id}/retry",
        "DELETE /v1/jobs/{id}",
        "POST /v1/jobs/{id}/playback-tokens",
        "GET /v1/playback/{jobId}/{path}",
        "GET /v1/stats",
        "POST /v1/machine-events",
      ]),
    );
  });
});

describe("request logs", () => {
  it("write one JSON line per request with method, path, status and duration, and no credentials", async () => {
    const lines: string[] = [];
    const capture = (...args: unknown[]) => void lines.push(args.map(String).join(" "));
    const spies = [
      vi.spyOn(console, "log").mockImplementation(capture),
      vi.spyOn(console, "error").mockImplementation(capture),
    ];
    const body = JSON.stringify({ type: "heartbeat", jobId: "job_x", machineId: "m", attempt: 1 });
    const signature = await signPayload(MACHINE_EVENTS_SECRET, body);
    try {
      const env = { ...cp.env, LOG_LEVEL: "info" };
      await app.request(
        "/v1/jobs?cursor=private-cursor-value",
        { headers: { authorization: `Bearer ${API_TOKEN}` } },
        env,
      );
      await app.request("/v1/stats", { headers: { authorization: "Bearer wrong-token-123456" } }, env);
      await app.request(
        "/v1/machine-events",
        { method: "POST", headers: { "content-type": "application/json", [SIGNATURE_HEADER]: signature }, body },
        env,
      );
    } finally {
      for (const spy of spies) spy.mockRestore();
    }
    const records = lines.map((line) => JSON.parse(line) as Record<string, unknown>).filter((r) => r.source === "api");
    expect(records.map((r) => [r.method, r.path, r.status])).toEqual([
      ["GET", "/v1/jobs", 400],
      ["GET", "/v1/stats", 401],
      ["POST", "/v1/machine-events", 200],
    ]);
    for (const record of records) expect(typeof record.ms).toBe("number");
    const all = lines.join("\n");
    for (const secret of [API_TOKEN, "wrong-token-123456", "private-cursor-value", signature, MACHINE_EVENTS_SECRET])
      expect(all).not.toContain(secret);
  });
});
