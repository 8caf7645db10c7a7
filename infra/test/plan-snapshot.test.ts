import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { repoRoot, runProgram } from "./mock-program.ts";
import { renderPlan } from "./plan.ts";

const update = process.env.UPDATE_PLAN_SNAPSHOT === "1";

describe("plan snapshot: a pull request's infrastructure change reads as a diff of this file", () => {
  for (const stack of ["dev", "prod"]) {
    test(`infra/__snapshots__/${stack}.plan.txt matches the program's plan for the ${stack} stack`, async () => {
      const run = await runProgram(stack);
      const script = run.one("cloudflare:index/workersScript:WorkersScript");
      // The hash the program saw (recomputing it here races with edits elsewhere in the tree).
      const imageHash = String((run.one("command:local:Command").rawInputs.triggers as string[])[0]);
      const plan = renderPlan(run, {
        [String(script.rawInputs.contentSha256)]: "<worker bundle sha256>",
        [imageHash]: "<image source sha256>",
        [imageHash.slice(0, 16)]: "<image source hash>",
        [repoRoot]: "<repo>",
      });

      const file = join(repoRoot, "infra", "__snapshots__", `${stack}.plan.txt`);
      if (update || !existsSync(file)) writeFileSync(file, plan);
      expect(plan, "run with UPDATE_PLAN_SNAPSHOT=1 to accept the new plan").toBe(readFileSync(file, "utf8"));
    });
  }
});
