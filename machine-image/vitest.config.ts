import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    name: "machine-image",
    include: ["test/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // ffmpeg already uses both cores; parallel files would only slow each other down.
    fileParallelism: false,
  },
});
