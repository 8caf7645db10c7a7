import { describe, expect, it } from "vitest";
import { JOB_ID_PATTERN, newJobId } from "../../src/http/job-id.ts";

describe("job ids", () => {
  it("have the documented shape", () => {
    expect(newJobId()).toMatch(JOB_ID_PATTERN);
  });

  it("sort by creation time", () => {
    const times = [1_700_000_000_000, 1_700_000_000_001, 1_800_000_000_000, 2_000_000_000_000];
    const ids = times.map((t) => newJobId(t));
    expect([...ids].sort()).toEqual(ids);
  });

  it("differ within the same millisecond", () => {
    const ids = new Set(Array.from({ length: 1000 }, () => newJobId(1_700_000_000_000)));
    expect(ids.size).toBe(1000);
  });
});
