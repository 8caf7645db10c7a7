import { defineConfig } from "vitest/config";

// One run over every workspace; each project has its own vitest.config.ts.
export default defineConfig({
  test: {
    projects: ["worker", "machine-image", "stacks/local", "stacks/cloud", "infra", "worker/client"],
    reporters: ["default", "./.ci/summary-reporter.ts"],
  },
});
