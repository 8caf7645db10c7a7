import { describe, expect, it } from "vitest";
import { backoffDelayMs, retry } from "../../src/contract/retry.ts";

const policy = { attempts: 4, baseDelayMs: 100, maxDelayMs: 300 };

/** A task failing `failures` times before it answers, and the sleeps retry asked for. */
function flaky(failures: number) {
  const waits: number[] = [];
  let calls = 0;
  const task = async (attempt: number) => {
    calls++;
    expect(attempt).toBe(calls);
    if (calls <= failures) throw new Error(`failure ${calls}`);
    return `answer on try ${calls}`;
  };
  const sleep = async (ms: number) => {
    waits.push(ms);
  };
  return { task, sleep, waits, calls: () => calls };
}

describe("retry", () => {
  it("tries again after a failure, doubling the step up to the cap with half of it random", async () => {
    const { task, sleep, waits } = flaky(3);
    await expect(retry(task, { ...policy, sleep, random: () => 1 })).resolves.toBe("answer on try 4");
    expect(waits).toEqual([100, 200, 300]);
    const low = flaky(3);
    await retry(low.task, { ...policy, sleep: low.sleep, random: () => 0 });
    expect(low.waits).toEqual([50, 100, 150]);
  });

  it("rejects with the last failure once every try has failed", async () => {
    const { task, sleep, calls } = flaky(10);
    await expect(retry(task, { ...policy, sleep })).rejects.toThrow("failure 4");
    expect(calls()).toBe(4);
  });

  it("stops at a failure the caller says is not worth another try", async () => {
    const { task, sleep, calls } = flaky(10);
    await expect(retry(task, { ...policy, sleep, retryIf: (_error, attempt) => attempt < 2 })).rejects.toThrow(
      "failure 2",
    );
    expect(calls()).toBe(2);
  });

  it("waits at least what the caller asks for (a Retry-After), and the step when that is longer", async () => {
    const { task, sleep, waits } = flaky(2);
    await retry(task, { ...policy, sleep, random: () => 1, retryIf: () => ({ afterMs: 150 }) });
    expect(waits).toEqual([150, 200]);
  });

  it("stops waiting as soon as its signal aborts, with the signal's reason", async () => {
    const controller = new AbortController();
    const { task, calls } = flaky(10);
    const running = retry(task, { attempts: 5, baseDelayMs: 60_000, maxDelayMs: 60_000, signal: controller.signal });
    await new Promise((resolve) => setTimeout(resolve, 10));
    controller.abort(new Error("stopped"));
    await expect(running).rejects.toThrow("stopped");
    expect(calls()).toBe(1);
  });

  it("never waits more than the cap, however many tries came before", () => {
    expect(backoffDelayMs(policy, 1_000, () => 1)).toBe(300);
  });
});
