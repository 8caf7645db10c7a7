import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    name: "infra",
    include: ["test/**/*.test.ts"],
    // The program builds the worker bundle with esbuild once per stack under mocks.
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
