import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { app } from "../../src/app.ts";
import type { Job } from "../../src/contract/index.ts";
import { claimNextJob } from "../../src/state/index.ts";
import { API_TOKEN, type ControlPlaneServices, startControlPlaneServices } from "./harness.ts";

let cp: ControlPlaneServices;
beforeAll(async () => {
  cp = await startControlPlaneServices({ MAX_MACHINES: "2" });
});
afterAll(() => cp?.stop());

const source = new Uint8Array(2048).fill(7);

/** Uploads a source through the presigned flow and returns its key in the input bucket. */
async function uploadSource(filename = "clip.mp4"): Promise<{ jobId: string; key: string }> {
  const res = await cp.request("/v1/uploads", {
    method: "POST",
    json: { filename, contentType: "video/mp4", size: source.length },
  });
  const body = (await res.json()) as {
    jobId: string;
    upload: { url: string; headers: Record<string, string> };
    job: Job;
  };
  const put = await fetch(body.upload.url, { method: "PUT", headers: body.upload.headers, body: source });
  expect(put.status).toBe(200);
  return { jobId: body.jobId, key: body.job.input.key };
}

async function createDirectJob(inputKey: string, extra: Record<string, unknown> = {}) {
  const res = await cp.request("/v1/jobs", { method: "POST", json: { inputKey, ...extra } });
  return { res, body: (await res.json()) as Job & { code?: string } };
}

async function reserveJob(): Promise<Job> {
  const res = await cp.request("/v1/uploads", {
    method: "POST",
    json: { filename: "later.mp4", contentType: "video/mp4", size: 10, callbackUrl: "https://hooks.example.com/cb" },
  });
  return ((await res.json()) as { job: Job }).job;
}

describe("POST /v1/jobs", () => {
  it("queues a job for an object already in the input bucket and admits a machine", async () => {
    const { key } = await uploadSource();
    const { res, body } = await createDirectJob(key, { preset: "hls-small", metadata: { a: "b" } });
    expect(res.status).toBe(201);
    expect(body).toMatchObject({
      state: "pending",
      preset: "hls-small",
      input: { key, sizeBytes: source.length, contentType: "video/mp4" },
      metadata: { a: "b" },
      attempts: 0,
    });
    expect(body.queuedAt).toBeDefined();
    expect(cp.flyMachines().length).toBeGreaterThanOrEqual(1);
  });

  it("answers 404 input_not_found when the object does not exist", async () => {
    const { res, body } = await createDirectJob("inputs/job_nothing/here.mp4");
    expect(res.status).toBe(404);
    expect(body.code).toBe("input_not_found");
  });

  it("answers 502 storage_unavailable when the object store cannot be reached", async () => {
    const res = await app.request(
      "/v1/jobs",
      {
        method: "POST",
        headers: { authorization: `Bearer ${API_TOKEN}`, "content-type": "application/json" },
        body: JSON.stringify({ inputKey: "inputs/job_x/clip.mp4" }),
      },
      { ...cp.env, S3_ENDPOINT: "http://127.0.0.1:1" },
    );
    expect(res.status).toBe(502);
    expect(((await res.json()) as { code: string }).code).toBe("storage_unavailable");
  });

  it("refuses keys outside inputs/ or with dot segments", async () => {
    for (const inputKey of ["outputs/x.mp4", "inputs/../outputs/x.mp4"]) {
      const { res, body } = await createDirectJob(inputKey);
      expect(res.status).toBe(400);
      expect(body.code).toBe("invalid_request");
    }
  });

  it("refuses an unknown preset and a private callback URL", async () => {
    const { key } = await uploadSource();
    expect((await createDirectJob(key, { preset: "nope" })).body.code).toBe("unknown_preset");
    expect((await createDirectJob(key, { callbackUrl: "https://10.0.0.1/cb" })).body.code).toBe("invalid_callback_url");
  });

  it("keeps a loudness setting on the job and hands it to the machine that claims it", async () => {
    const { key } = await uploadSource();
    const { res, body } = await createDirectJob(key, { loudness: { targetLufs: -16 } });
    expect(res.status).toBe(201);
    expect(body.loudness).toEqual({ targetLufs: -16 });
    let claim = await claimNextJob(cp.redis, { machineId: "m-loud", leaseSeconds: 60 });
    while (claim && claim.jobId !== body.id)
      claim = await claimNextJob(cp.redis, { machineId: "m-loud", leaseSeconds: 60 });
    expect(claim).toMatchObject({ jobId: body.id, loudness: { targetLufs: -16 } });
  });

  it.each([{ targetLufs: -50 }, { targetLufs: "-23" }, {}, { targetLufs: -23, mode: "fast" }])(
    "refuses the loudness setting %j with invalid_request",
    async (loudness) => {
      const { key } = await uploadSource();
      const { res, body } = await createDirectJob(key, { loudness });
      expect(res.status).toBe(400);
      expect(body.code).toBe("invalid_request");
    },
  );
});

describe("GET /v1/jobs/:id", () => {
  it("returns the public job", async () => {
    const job = await reserveJob();
    const res = await cp.request(`/v1/jobs/${job.id}`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual(job);
  });

  it.each(["job_00000000000000000000000000", "nope", "..%2F..%2Fetc", "x".repeat(300)])(
    "answers the same 404 job_not_found for %s",
    async (id) => {
      const res = await cp.request(`/v1/jobs/${id}`);
      expect(res.status).toBe(404);
      expect(((await res.json()) as { code: string }).code).toBe("job_not_found");
    },
  );
});

describe("GET /v1/jobs", () => {
  it("pages through jobs newest first with a cursor and filters by state", async () => {
    const created = [await reserveJob(), await reserveJob(), await reserveJob()];
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const query = new URLSearchParams({ state: "awaiting_upload", limit: "2", ...(cursor ? { cursor } : {}) });
      const res = await cp.request(`/v1/jobs?${query}`);
      expect(res.status).toBe(200);
      const page = (await res.json()) as { jobs: Job[]; nextCursor: string | null };
      expect(page.jobs.length).toBeLessThanOrEqual(2);
      for (const job of page.jobs) expect(job.state).toBe("awaiting_upload");
      seen.push(...page.jobs.map((j) => j.id));
      cursor = page.nextCursor;
    } while (cursor);
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen).toEqual(expect.arrayContaining(created.map((j) => j.id)));
    const positions = created.map((j) => seen.indexOf(j.id));
    expect(positions).toEqual([...positions].sort((a, b) => b - a));
  });

  it("refuses an unknown state, a bad limit and a forged cursor with invalid_request", async () => {
    for (const query of ["state=done", "limit=0", "limit=1000", "cursor=garbage"]) {
      const res = await cp.request(`/v1/jobs?${query}`);
      expect(res.status, query).toBe(400);
      expect(((await res.json()) as { code: string }).code).toBe("invalid_request");
    }
  });
});

describe("cancel and retry", () => {
  it("cancels a job, enqueues its callback, and refuses a second cancel with 409 invalid_state", async () => {
    const job = await reserveJob();
    const before = cp.callbacks.length;
    const res = await cp.request(`/v1/jobs/${job.id}/cancel`, { method: "POST" });
    expect(res.status).toBe(200);
    expect(((await res.json()) as Job).state).toBe("canceled");
    expect(cp.callbacks.slice(before)).toEqual([{ body: { jobId: job.id, state: "canceled", attempt: 0 } }]);

    const again = await cp.request(`/v1/jobs/${job.id}/cancel`, { method: "POST" });
    expect(again.status).toBe(409);
    expect(((await again.json()) as { code: string }).code).toBe("invalid_state");
  });

  it("retries a canceled job into the queue; retrying a queued job is 409", async () => {
    const job = await reserveJob();
    await cp.request(`/v1/jobs/${job.id}/cancel`, { method: "POST" });
    const res = await cp.request(`/v1/jobs/${job.id}/retry`, { method: "POST" });
    expect(res.status).toBe(200);
    expect(((await res.json()) as Job).state).toBe("pending");
    const again = await cp.request(`/v1/jobs/${job.id}/retry`, { method: "POST" });
    expect(again.status).toBe(409);
    expect(((await again.json()) as { code: string }).code).toBe("invalid_state");
  });

  it("refuses to retry a job that never failed (awaiting upload)", async () => {
    const job = await reserveJob();
    const res = await cp.request(`/v1/jobs/${job.id}/retry`, { method: "POST" });
    expect(res.status).toBe(409);
  });

  it("answers 404 job_not_found for unknown jobs", async () => {
    for (const action of ["cancel", "retry"]) {
      const res = await cp.request(`/v1/jobs/job_unknown/${action}`, { method: "POST" });
      expect(res.status).toBe(404);
      expect(((await res.json()) as { code: string }).code).toBe("job_not_found");
    }
  });
});

describe("GET /v1/stats", () => {
  it("reports the queue and the machine cap from settings", async () => {
    const res = await cp.request("/v1/stats");
    expect(res.status).toBe(200);
    const stats = (await res.json()) as { maxMachines: number; queued: number; running: number; machines: object };
    expect(stats.maxMachines).toBe(2);
    expect(stats.queued).toBeGreaterThanOrEqual(0);
    expect(typeof stats.machines).toBe("object");
  });
});
