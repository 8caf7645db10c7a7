/**
 * Many short clips submitted at once under a machine cap of three: every job completes, each
 * exactly once (one `completed` from a machine and one `job.completed` callback per job), the
 * cap is never passed (sampled every 50 ms), and the queue drains. Prints throughput and
 * latency percentiles; nothing about speed is asserted.
 *
 * `npm test` runs 12 clips; `npm run test:load` runs the full 60 (TCODER_LOAD_JOBS).
 */
import type { Job } from "@tcoder/worker/contract";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type CallbackReceiver,
  type FaultStack,
  makeTinyClip,
  startCallbackReceiver,
  startFaultStack,
  submitClip,
  waitFor,
  waitForTerminal,
} from "../reliability/harness.ts";

const jobCount = Number(process.env.TCODER_LOAD_JOBS ?? 12);
const cap = 3;

const percentile = (values: number[], p: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? Number.NaN;
};

describe(`${jobCount} clips at once with a machine cap of ${cap}`, () => {
  let fault: FaultStack;
  let hooks: CallbackReceiver;
  let clip: string;

  beforeAll(async () => {
    hooks = await startCallbackReceiver();
    fault = await startFaultStack("load", { maxMachines: cap, vars: { MACHINE_IDLE_STOP_SECONDS: "10" } });
    clip = await makeTinyClip(fault.dir);
  });
  afterAll(async () => {
    await fault?.stop();
    await hooks?.close();
  });

  it(
    "completes every job exactly once without passing the cap, and drains the queue",
    async () => {
      const uploadedAt = new Map<string, number>();
      const started = Date.now();
      const ids = await Promise.all(
        Array.from({ length: jobCount }, async (_, n) => {
          const id = await submitClip(fault, clip, { callbackUrl: hooks.url, filename: `load-${n}.mp4` });
          uploadedAt.set(id, Date.now());
          return id;
        }),
      );
      const jobs = await waitForTerminal(fault.api, ids, 30_000 + jobCount * 15_000);
      expect(jobs.filter((j) => j.state !== "completed").map((j) => [j.id, j.state, j.error?.code])).toEqual([]);
      expect(jobs.every((j) => j.attempts === 1)).toBe(true);
      for (const id of ids) expect(fault.completionsOf(id)).toHaveLength(1);
      await waitFor("every completed callback", () => ids.every((id) => hooks.completedCount(id) > 0));
      for (const id of ids) expect(hooks.completedCount(id)).toBe(1);
      expect(fault.peakLiveMachines()).toBeGreaterThan(0);
      expect(fault.peakLiveMachines()).toBeLessThanOrEqual(cap);
      expect(fault.stack.cloud.fly.machines(fault.stack.cloud.settings.FLY_APP_NAME).length).toBeLessThanOrEqual(cap);
      expect(await fault.api.stats()).toMatchObject({ queued: 0, running: 0 });

      const ms = (iso: string | undefined) => (iso ? Date.parse(iso) : Number.NaN);
      const toClaim = jobs.map((j: Job) => ms(j.startedAt) - (uploadedAt.get(j.id) ?? Number.NaN));
      const toDone = jobs.map((j: Job) => ms(j.finishedAt) - (uploadedAt.get(j.id) ?? Number.NaN));
      const lastDone = Math.max(...jobs.map((j) => ms(j.finishedAt)));
      const perMinute = (jobCount / (lastDone - started)) * 60_000;
      const s = (v: number) => `${(v / 1000).toFixed(2)} s`;
      console.log(
        [
          `load: ${jobCount} jobs, cap ${cap}, peak ${fault.peakLiveMachines()} machines`,
          `  throughput              ${perMinute.toFixed(1)} jobs/minute`,
          `  upload done → claimed   p50 ${s(percentile(toClaim, 50))}  p95 ${s(percentile(toClaim, 95))}`,
          `  upload done → completed p50 ${s(percentile(toDone, 50))}  p95 ${s(percentile(toDone, 95))}`,
        ].join("\n"),
      );
    },
    60_000 + jobCount * 20_000,
  );
});
