import type { MachineEvent, MachineEventResponse } from "@tcoder/worker/contract";
import { describe, expect, it } from "vitest";
import type { ControlPlane } from "../src/control-plane.ts";
import { type Claim, type LoopDeps, pollDelayMs, runMachineLoop } from "../src/loop.ts";
import { AttemptStoppedError, type TranscodeOutcome } from "../src/transcode.ts";

const probe = { formatName: "mp4", durationSeconds: 3, sizeBytes: 10 };
const completed: TranscodeOutcome = {
  kind: "completed",
  outputs: { manifest: "outputs/j1/manifest.json", renditions: [] },
  probe,
  manifest: {
    version: 1,
    jobId: "j1",
    attempt: 1,
    preset: "hls-ladder",
    createdAt: new Date(0).toISOString(),
    durationSeconds: 2.96,
    probe,
    files: [
      { key: "outputs/j1/1/video.mp4", sizeBytes: 700, contentType: "video/mp4" },
      { key: "outputs/j1/1/poster.jpg", sizeBytes: 50, contentType: "image/jpeg" },
    ],
  },
};

function recorder(answer: (event: MachineEvent) => MachineEventResponse["action"] = () => "continue") {
  const events: MachineEvent[] = [];
  const controlPlane: ControlPlane = {
    async send(event) {
      events.push(event);
      return { ok: true, action: answer(event) };
    },
  };
  return { events, controlPlane };
}

const claimOnce = (claim: Claim) => {
  let given = false;
  return async () => {
    if (given) return null;
    given = true;
    return claim;
  };
};

const job: Claim = { jobId: "j1", attempt: 1, preset: "hls-ladder", inputKey: "inputs/j1/a.mp4" };

const baseDeps = (overrides: Partial<LoopDeps>): LoopDeps => ({
  machineId: "m-1",
  leaseSeconds: 60,
  idleStopSeconds: 0.1,
  pollMinMs: 1,
  pollMaxMs: 5,
  claim: async () => null,
  controlPlane: recorder().controlPlane,
  runJob: async () => completed,
  shutdown: new AbortController().signal,
  ...overrides,
});

const waitForAbort = (signal: AbortSignal) =>
  new Promise<never>((_, reject) =>
    signal.addEventListener("abort", () => reject(new AttemptStoppedError()), { once: true }),
  );

describe("machine loop", () => {
  it("stops when idle, counting from boot; empty polls do not reset the idle clock", async () => {
    let clock = 0;
    let polls = 0;
    const exit = await runMachineLoop(
      baseDeps({
        idleStopSeconds: 2,
        now: () => clock,
        claim: async () => {
          polls++;
          clock += 500;
          return null;
        },
      }),
    );
    expect(exit).toEqual({ reason: "idle", jobsFinished: 0 });
    expect(polls).toBe(4);
  });

  it("measures idle time from when the last job finished, not from when it was claimed", async () => {
    let clock = 0;
    let pollsAfterJob = 0;
    let jobDone = false;
    const claim = claimOnce(job);
    const exit = await runMachineLoop(
      baseDeps({
        idleStopSeconds: 2,
        now: () => clock,
        claim: async () => {
          clock += 500;
          if (jobDone) pollsAfterJob++;
          return claim();
        },
        runJob: async () => {
          clock += 10_000; // a job far longer than the idle timeout
          jobDone = true;
          return completed;
        },
      }),
    );
    expect(exit).toEqual({ reason: "idle", jobsFinished: 1 });
    expect(pollsAfterJob).toBe(4);
  });

  it("reports claimed, progress and completed for a job, signed events in order", async () => {
    const { events, controlPlane } = recorder();
    await runMachineLoop(
      baseDeps({
        claim: claimOnce(job),
        controlPlane,
        runJob: async (_job, { onProgress }) => {
          onProgress("downloading", 0);
          await new Promise((r) => setTimeout(r, 20));
          onProgress("transcoding", 0.5);
          await new Promise((r) => setTimeout(r, 20));
          return completed;
        },
      }),
    );
    expect(events.map((e) => e.type)).toEqual(["claimed", "progress", "progress", "completed"]);
    expect(events[2]).toMatchObject({
      type: "progress",
      stage: "transcoding",
      progress: 0.5,
      jobId: "j1",
      attempt: 1,
      machineId: "m-1",
    });
    expect(events[3]).toMatchObject({
      type: "completed",
      outputs: completed.kind === "completed" ? completed.outputs : {},
      // What the package costs to keep: its files and the manifest itself.
      usage: { outputSeconds: 2.96, packageBytes: 750, objects: 3 },
    });
  });

  it("throttles progress within a stage", async () => {
    const { events, controlPlane } = recorder();
    await runMachineLoop(
      baseDeps({
        claim: claimOnce(job),
        controlPlane,
        runJob: async (_job, { onProgress }) => {
          for (let i = 0; i < 50; i++) {
            onProgress("transcoding", i / 50);
            await new Promise((r) => setImmediate(r));
          }
          return completed;
        },
      }),
    );
    expect(events.filter((e) => e.type === "progress")).toHaveLength(1);
  });

  it("heartbeats while working and drops the work without reporting when told to abort", async () => {
    const { events, controlPlane } = recorder((event) => (event.type === "heartbeat" ? "abort" : "continue"));
    let stopped = false;
    const exit = await runMachineLoop(
      baseDeps({
        leaseSeconds: 0.15,
        claim: claimOnce(job),
        controlPlane,
        runJob: async (_job, { signal }) => {
          await waitForAbort(signal).catch((error) => {
            stopped = true;
            throw error;
          });
          return completed;
        },
      }),
    );
    expect(stopped).toBe(true);
    expect(exit.reason).toBe("idle");
    expect(events.map((e) => e.type)).toEqual(["claimed", "heartbeat"]);
  });

  it("refuses to confirm the lease for publishing when the control plane answers abort", async () => {
    const { events, controlPlane } = recorder((event) => (event.type === "heartbeat" ? "abort" : "continue"));
    let confirmed: boolean | undefined;
    await runMachineLoop(
      baseDeps({
        claim: claimOnce(job),
        controlPlane,
        runJob: async (_job, { confirmLease }) => {
          confirmed = await confirmLease();
          throw new AttemptStoppedError();
        },
      }),
    );
    expect(confirmed).toBe(false);
    expect(events.map((e) => e.type)).toEqual(["claimed", "heartbeat"]);
  });

  it("releases the job back to the queue on shutdown and exits", async () => {
    const { events, controlPlane } = recorder();
    const shutdown = new AbortController();
    const exit = await runMachineLoop(
      baseDeps({
        claim: claimOnce(job),
        controlPlane,
        shutdown: shutdown.signal,
        runJob: async (_job, { signal }) => {
          setTimeout(() => shutdown.abort(), 20);
          return waitForAbort(signal);
        },
      }),
    );
    expect(exit).toEqual({ reason: "shutdown", jobsFinished: 1 });
    expect(events.map((e) => e.type)).toEqual(["claimed", "released"]);
  });

  it("fails the job as internal and retryable when the attempt crashes, and keeps going", async () => {
    const { events, controlPlane } = recorder();
    await runMachineLoop(
      baseDeps({
        claim: claimOnce(job),
        controlPlane,
        runJob: async () => {
          throw new Error("disk full");
        },
      }),
    );
    expect(events.at(-1)).toMatchObject({ type: "failed", retryable: true, error: { code: "internal" } });
  });

  it("fails a job naming an unknown preset as unsupported", async () => {
    const { events, controlPlane } = recorder();
    await runMachineLoop(baseDeps({ claim: claimOnce({ ...job, preset: "potato" }), controlPlane }));
    expect(events.at(-1)).toMatchObject({ type: "failed", retryable: false, error: { code: "unsupported" } });
  });

  it("keeps polling when a claim errors (Redis unreachable)", async () => {
    let calls = 0;
    const exit = await runMachineLoop(
      baseDeps({
        idleStopSeconds: 0.05,
        claim: async () => {
          calls++;
          throw new Error("ECONNREFUSED");
        },
      }),
    );
    expect(exit.reason).toBe("idle");
    expect(calls).toBeGreaterThan(1);
  });
});

describe("pollDelayMs", () => {
  it("grows exponentially with jitter up to the maximum", () => {
    expect(pollDelayMs(1, 500, 15_000, () => 1)).toBe(500);
    expect(pollDelayMs(3, 500, 15_000, () => 1)).toBe(2000);
    expect(pollDelayMs(30, 500, 15_000, () => 1)).toBe(15_000);
    expect(pollDelayMs(30, 500, 15_000, () => 0)).toBe(250);
  });
});

describe("machine loop polling", () => {
  it("claims the next job as soon as one finishes, without waiting a poll interval", async () => {
    const queue = [job, { ...job, jobId: "j2" }];
    let claims = 0;
    const shutdown = new AbortController();
    const exit = await runMachineLoop(
      baseDeps({
        // A wait of even one poll interval between the two jobs would outlast the test's timeout.
        pollMinMs: 60_000,
        pollMaxMs: 60_000,
        idleStopSeconds: 600,
        shutdown: shutdown.signal,
        claim: async () => {
          claims++;
          return queue.shift() ?? null;
        },
        runJob: async (claimed) => {
          if (claimed.jobId === "j2") shutdown.abort();
          return completed;
        },
      }),
    );
    expect(exit).toEqual({ reason: "shutdown", jobsFinished: 2 });
    expect(claims).toBe(2);
  });
});
