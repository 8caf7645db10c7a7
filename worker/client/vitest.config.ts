import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    name: "client",
    environment: "node",
    include: ["test/**/*.test.ts"],
    // Each file runs the local stack: workerd, redis-server, the S3 store and machine processes running ffmpeg.
    testTimeout: 180_000,
    hookTimeout: 120_000,
  },
});
