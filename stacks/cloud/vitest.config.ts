import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    name: "cloud",
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
  },
});
