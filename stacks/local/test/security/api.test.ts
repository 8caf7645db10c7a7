/**
 * The API's doors, tried from outside against the local stack configured like a deployed one
 * (ALLOW_INSECURE_CALLBACKS=false, ALLOW_LOOPBACK_SOURCE_URLS=false): no or a wrong token is 401,
 * an unknown job is a 404 that says nothing else, oversized and malformed bodies are refused with a
 * problem document, forged and stale machine-event signatures change nothing, and callbacks and
 * source URLs pointing at private addresses are refused.
 */
import { MACHINE_EVENTS_PATH, type MachineEvent, SIGNATURE_HEADER, signPayload } from "@tcoder/worker/contract";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FaultStack, startFaultStack } from "../reliability/harness.ts";

describe("the API against intruders and bad requests", () => {
  let fault: FaultStack;
  let api: string;
  let token: string;
  let jobId: string;

  const call = async (path: string, init: RequestInit & { auth?: string | null } = {}) => {
    const { auth = `Bearer ${token}`, ...rest } = init;
    const response = await fetch(`${api}${path}`, {
      ...rest,
      headers: {
        ...(auth === null ? {} : { authorization: auth }),
        ...(rest.body === undefined ? {} : { "content-type": "application/json" }),
        ...(rest.headers as Record<string, string> | undefined),
      },
    });
    const text = await response.text();
    return { status: response.status, type: response.headers.get("content-type") ?? "", text };
  };
  const problemCode = (text: string) => (JSON.parse(text) as { code?: string }).code;
  const createUpload = (body: Record<string, unknown>) =>
    call("/v1/uploads", {
      method: "POST",
      body: JSON.stringify({ filename: "a.mp4", contentType: "video/mp4", size: 1000, ...body }),
    });

  beforeAll(async () => {
    fault = await startFaultStack("security-api", {
      vars: { ALLOW_INSECURE_CALLBACKS: "false", ALLOW_LOOPBACK_SOURCE_URLS: "false" },
    });
    api = fault.stack.cloud.apiUrl;
    token = fault.stack.cloud.apiToken;
    const created = await createUpload({});
    jobId = (JSON.parse(created.text) as { jobId: string }).jobId;
  });
  afterAll(async () => {
    await fault?.stop();
  });

  it("answers 401 to every client route without a token or with a wrong one", async () => {
    const routes: [string, string][] = [
      ["GET", "/v1/jobs"],
      ["GET", `/v1/jobs/${jobId}`],
      ["POST", `/v1/jobs/${jobId}/cancel`],
      ["POST", "/v1/uploads"],
      ["GET", "/v1/stats"],
    ];
    for (const auth of [null, "Bearer wrong-token-of-some-length", `Basic ${btoa(`user:${token}`)}`, token]) {
      for (const [method, path] of routes) {
        const answer = await call(path, { method, auth, ...(method === "POST" ? { body: "{}" } : {}) });
        expect([method, path, answer.status]).toEqual([method, path, 401]);
        expect(answer.type).toContain("application/problem+json");
        expect(problemCode(answer.text)).toBe("unauthorized");
      }
    }
    // The job was not canceled by any of those.
    expect((await call(`/v1/jobs/${jobId}`)).status).toBe(200);
  });

  it("answers an unknown job id with the same 404 whatever its shape, echoing nothing", async () => {
    const unknown = jobId.replace(/.{6}$/, "zzzzzz");
    const answers = await Promise.all(
      [unknown, "job_00000000000000000000000000", "../../etc/passwd", "jobs:queue", "%00"].map((id) =>
        call(`/v1/jobs/${encodeURIComponent(id)}`),
      ),
    );
    for (const answer of answers) {
      expect(answer.status).toBe(404);
      expect(problemCode(answer.text)).toBe("job_not_found");
      expect(answer.text).not.toMatch(/jobs:|etc\/passwd|redis|stack|at \w+ \(/i);
    }
    expect(new Set(answers.map((a) => a.text)).size).toBe(1);
    expect((await call(`/v1/jobs/${unknown}/cancel`, { method: "POST" })).status).toBe(404);
  });

  it("refuses malformed and oversized JSON with a problem document", async () => {
    const malformed = await call("/v1/uploads", { method: "POST", body: '{"filename": "a.mp4",' });
    expect(malformed.status).toBe(400);
    expect(problemCode(malformed.text)).toBe("malformed_json");

    const wrongShape = await call("/v1/uploads", { method: "POST", body: JSON.stringify(["not", "an", "object"]) });
    expect(wrongShape.status).toBe(400);
    expect(problemCode(wrongShape.text)).toBe("invalid_request");

    const oversized = await createUpload({ metadata: { note: "x".repeat(100 * 1024) } });
    expect(oversized.status).toBe(413);
    expect(problemCode(oversized.text)).toBe("payload_too_large");
  });

  it("refuses machine events with a forged, stale or missing signature, and they change nothing", async () => {
    const { cloud } = fault.stack;
    const event: MachineEvent = {
      type: "failed",
      jobId,
      machineId: "intruder",
      attempt: 1,
      error: { code: "internal", message: "forged" },
      retryable: false,
    };
    const body = JSON.stringify(event);
    const nowSeconds = Math.floor(Date.now() / 1000);
    const signatures = [
      await signPayload("a-secret-that-is-not-the-one-used", body),
      await signPayload(cloud.settings.MACHINE_EVENTS_SECRET, body, nowSeconds - 3600),
      await signPayload(cloud.settings.MACHINE_EVENTS_SECRET, body, nowSeconds + 3600),
      (await signPayload(cloud.settings.MACHINE_EVENTS_SECRET, `${body} `)).toString(),
      "t=1,v1=00",
      null,
    ];
    for (const signature of signatures) {
      const answer = await call(MACHINE_EVENTS_PATH, {
        method: "POST",
        auth: null,
        body,
        headers: signature === null ? {} : { [SIGNATURE_HEADER]: signature },
      });
      expect(answer.status).toBe(401);
      expect(problemCode(answer.text)).toBe("invalid_signature");
    }
    const job = JSON.parse((await call(`/v1/jobs/${jobId}`)).text) as { state: string; error?: unknown };
    expect(job.state).toBe("awaiting_upload");
    expect(job.error).toBeUndefined();
  });

  it("refuses callback URLs that point into private networks or are not https", async () => {
    for (const callbackUrl of [
      "https://127.0.0.1/hook",
      "https://localhost/hook",
      "https://10.1.2.3/hook",
      "https://192.168.1.1/hook",
      "https://169.254.169.254/latest/meta-data",
      "https://[::1]/hook",
      "https://[::ffff:7f00:1]/hook",
      "http://example.com/hook",
      "https://user:pass@example.com/hook",
      "ftp://example.com/hook",
    ]) {
      const answer = await createUpload({ callbackUrl });
      expect([callbackUrl, answer.status]).toEqual([callbackUrl, 400]);
      expect(problemCode(answer.text)).toBe("invalid_callback_url");
    }
    expect((await createUpload({ callbackUrl: "https://hooks.example.com/tcoder" })).status).toBe(201);
  });

  it("refuses source URLs that point into this network or are not https", async () => {
    for (const url of [
      `${api}/v1/stats`,
      "http://127.0.0.1/clip.mp4",
      "https://127.0.0.1/clip.mp4",
      "https://localhost/clip.mp4",
      "https://169.254.169.254/latest/meta-data",
      "https://[::ffff:7f00:1]/clip.mp4",
      "https://user:pass@example.com/clip.mp4",
    ]) {
      const answer = await call("/v1/jobs", { method: "POST", body: JSON.stringify({ url }) });
      expect([url, answer.status]).toEqual([url, 400]);
      expect(problemCode(answer.text)).toBe("invalid_source_url");
    }
  });
});
