/**
 * `POST /v1/jobs {url}` against real Redis: the job is queued with the fetch policy the claim hands
 * to the machine; URLs that could reach this network, carry credentials or are not https are refused
 * up front (the machine checks again after DNS and on every redirect: machine-image source-url).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Job } from "../../src/contract/index.ts";
import { claimNextJob } from "../../src/state/index.ts";
import { type ControlPlaneServices, startControlPlaneServices } from "./harness.ts";

let cp: ControlPlaneServices;
beforeAll(async () => {
  cp = await startControlPlaneServices({ MAX_MACHINES: "1", MAX_UPLOAD_BYTES: "1000000" });
});
afterAll(() => cp?.stop());

const create = async (json: Record<string, unknown>, env = cp.env) => {
  const res = await cp.request("/v1/jobs", { method: "POST", json, ...(env === cp.env ? {} : { env }) });
  return { status: res.status, body: (await res.json()) as Job & { code?: string; detail?: string } };
};

describe("POST /v1/jobs with a url", () => {
  it("queues a job whose claim carries the URL and the stack's limits, keeping the source under inputs/", async () => {
    const { status, body } = await create({
      url: "https://media.example.com/films/Holiday%20Clip.mp4?sig=abc",
      preset: "hls-small",
      playback: "signed",
      metadata: { ref: "42" },
    });
    expect(status).toBe(201);
    expect(body).toMatchObject({
      state: "pending",
      preset: "hls-small",
      playback: "signed",
      metadata: { ref: "42" },
      input: {
        key: `inputs/${body.id}/Holiday_Clip.mp4`,
        filename: "Holiday Clip.mp4",
        url: "https://media.example.com/films/Holiday%20Clip.mp4?sig=abc",
      },
    });
    let claim = await claimNextJob(cp.redis, { machineId: "m-url", leaseSeconds: 60 });
    while (claim && claim.jobId !== body.id)
      claim = await claimNextJob(cp.redis, { machineId: "m-url", leaseSeconds: 60 });
    expect(claim).toMatchObject({
      inputKey: body.input.key,
      playback: "signed",
      source: {
        url: "https://media.example.com/films/Holiday%20Clip.mp4?sig=abc",
        maxBytes: 1_000_000,
        allowLoopback: false,
      },
    });
  });

  it("names the kept source `source` when the URL's last segment is no file name", async () => {
    const { body } = await create({ url: "https://media.example.com/" });
    expect(body.input.key).toBe(`inputs/${body.id}/source`);
    expect(body.input.filename).toBeUndefined();
  });

  it.each([
    ["http://media.example.com/a.mp4", "url must use https"],
    ["https://127.0.0.1/a.mp4", "url must not point at a private, loopback or link-local address"],
    ["https://localhost:8080/a.mp4", "url must not point at a private, loopback or link-local address"],
    ["https://169.254.169.254/latest/meta-data", "url must not point at a private, loopback or link-local address"],
    ["https://10.1.2.3/a.mp4", "url must not point at a private, loopback or link-local address"],
    ["https://[::1]/a.mp4", "url must not point at a private, loopback or link-local address"],
    ["https://[::ffff:192.168.0.1]/a.mp4", "url must not point at a private, loopback or link-local address"],
    ["https://user:pw@media.example.com/a.mp4", "url must not carry credentials"],
    ["ftp://media.example.com/a.mp4", "url must use https"],
    ["not a url", "url is not a URL"],
  ])("refuses %s with 400 invalid_source_url", async (url, detail) => {
    const { status, body } = await create({ url });
    expect(status).toBe(400);
    expect(body).toMatchObject({ code: "invalid_source_url", detail });
  });

  it("accepts http and loopback where the stack allows it (local), never other private ranges", async () => {
    const local = { ...cp.env, ALLOW_LOOPBACK_SOURCE_URLS: "true" };
    expect((await create({ url: "http://127.0.0.1:9999/a.mp4" }, local)).status).toBe(201);
    expect((await create({ url: "http://localhost:9999/a.mp4" }, local)).status).toBe(201);
    expect((await create({ url: "http://10.0.0.1/a.mp4" }, local)).body.code).toBe("invalid_source_url");
    expect((await create({ url: "http://169.254.169.254/" }, local)).body.code).toBe("invalid_source_url");
  });

  it("wants exactly one of inputKey and url", async () => {
    for (const json of [{}, { url: "https://media.example.com/a.mp4", inputKey: "inputs/job_x/a.mp4" }]) {
      const { status, body } = await create(json);
      expect(status).toBe(400);
      expect(body.code).toBe("invalid_request");
      expect(body.detail).toContain("exactly one of inputKey and url");
    }
  });
});
