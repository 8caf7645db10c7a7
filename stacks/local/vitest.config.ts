import { defineConfig } from "vitest/config";

// Tests here spawn real processes (redis-server, workerd, ffmpeg), so they get generous timeouts.
export default defineConfig({
  test: {
    name: "local",
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
