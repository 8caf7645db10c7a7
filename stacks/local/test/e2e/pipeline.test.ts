/**
 * The local stack under a machine cap: six uploads at once with MAX_MACHINES=2 all complete, the
 * pool never passes two machines, and once the queue drains the cron stops the idle machines.
 */
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import type { Job } from "@tcoder/worker/contract";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApiClient } from "../../src/cli/api-client.ts";
import { createProgress } from "../../src/cli/progress.ts";
import { transcodeFile } from "../../src/cli/transcode.ts";
import { type LocalStack, repoRoot, startLocalStack } from "../../src/stack.ts";
import { makeClip } from "./clips.ts";

const liveStates = new Set(["created", "starting", "started"]);
const run = promisify(execFile);
const tcoder = join(repoRoot, "stacks", "local", "bin", "tcoder.mjs");
const silent = createProgress({ write: () => true, isTTY: false } as unknown as NodeJS.WriteStream);

describe("six clips with a machine cap of two", () => {
  let dir: string;
  let stack: LocalStack;
  let clips: string[];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "tcoder-pipeline-"));
    clips = await Promise.all([1, 2, 3, 4, 5, 6].map((n) => makeClip(join(dir, `clip-${n}.mp4`))));
    stack = await startLocalStack({
      dir: join(dir, "state"),
      maxMachines: 2,
      cronIntervalMs: 1_000,
      vars: { MACHINE_IDLE_STOP_SECONDS: "3", DEFAULT_PRESET: "hls-small" },
    });
  }, 120_000);

  afterAll(async () => {
    await stack?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it("completes every job once, never runs more than two machines, then stops them when idle", async () => {
    const { cloud } = stack;
    const app = cloud.settings.FLY_APP_NAME;
    const api = createApiClient({ baseUrl: cloud.apiUrl, token: cloud.apiToken });
    let peak = 0;
    const sampler = setInterval(() => {
      const live = cloud.fly.machines(app).filter((m) => liveStates.has(m.state)).length;
      peak = Math.max(peak, live);
    }, 50);
    try {
      const jobs = await Promise.all(clips.map((clip) => transcodeFile(api, clip, { progress: silent, pollMs: 250 })));
      expect(jobs.map((job) => job.state)).toEqual(Array(6).fill("completed"));
      expect(jobs.every((job) => job.attempts === 1)).toBe(true);
      expect(cloud.fly.machines(app).length).toBeLessThanOrEqual(2);

      // The queue drained; the cron stops machines idle for MACHINE_IDLE_STOP_SECONDS.
      const deadline = Date.now() + 60_000;
      while (cloud.fly.machines(app).some((m) => m.state !== "stopped") && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
      expect(cloud.fly.machines(app).map((m) => m.state)).toEqual(cloud.fly.machines(app).map(() => "stopped"));
      // Stopped by the control plane's cron, not by the machines' own (later) idle exit.
      expect(cloud.fly.calls()["POST /v1/apps/{app}/machines/{id}/stop"]).toBeGreaterThan(0);
      const stats = await api.stats();
      expect(stats).toMatchObject({ queued: 0, running: 0, maxMachines: 2 });
    } finally {
      clearInterval(sampler);
    }
    expect(peak).toBeGreaterThan(0);
    expect(peak).toBeLessThanOrEqual(2);
  }, 600_000);

  it("answers the CLI's status, jobs and cancel against the running stack", async () => {
    const dirFlag = ["--dir", join(dir, "state")];
    const cli = (...args: string[]) =>
      run(process.execPath, [tcoder, ...args, ...dirFlag], { cwd: repoRoot, timeout: 60_000 }).then(
        ({ stdout }) => ({ code: 0, stdout }),
        (error: { code: number; stdout: string; stderr: string }) => ({ code: error.code, stdout: error.stderr }),
      );
    const api = createApiClient({ baseUrl: stack.cloud.apiUrl, token: stack.cloud.apiToken });
    const waiting = await api.createUpload({ filename: "later.mp4", contentType: "video/mp4", size: 1000 });

    const listed = await cli("jobs", "--json", "--state", "awaiting_upload");
    expect(listed.code).toBe(0);
    expect((JSON.parse(listed.stdout) as { jobs: Job[] }).jobs.map((job) => job.id)).toEqual([waiting.jobId]);

    const status = await cli("status", waiting.jobId);
    expect(JSON.parse(status.stdout)).toMatchObject({ id: waiting.jobId, state: "awaiting_upload" });
    const stats = await cli("status");
    expect(JSON.parse(stats.stdout)).toMatchObject({ maxMachines: 2, queued: 0 });

    const canceled = await cli("cancel", waiting.jobId);
    expect(canceled).toEqual({ code: 0, stdout: `${waiting.jobId}: canceled\n` });
    const again = await cli("cancel", waiting.jobId);
    expect(again.code).toBe(1);
    expect(again.stdout).toContain("invalid_state");

    const unknown = await cli("status", "job_doesnotexist");
    expect(unknown.code).toBe(1);
    expect(unknown.stdout).toContain("job_not_found");
    const usage = await cli("cancel");
    expect(usage.code).toBe(2);
    expect(usage.stdout).toContain("cancel needs a job id");
  }, 120_000);
});
