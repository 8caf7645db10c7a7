import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    name: "worker",
    environment: "node",
    include: ["test/**/*.test.ts"],
    // Real redis-server, the Upstash bridge and the S3 store start per file.
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});
