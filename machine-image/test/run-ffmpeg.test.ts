import { describe, expect, it } from "vitest";
import { FfmpegAbortedError, FfmpegError, parseProgressBlock, runFfmpeg } from "../src/media/run-ffmpeg.ts";

describe("ffmpeg progress", () => {
  it("parses a -progress block", () => {
    const block = ["frame=90", "out_time_us=3018594", "speed=16.1x", "progress=continue"];
    expect(parseProgressBlock(block)).toEqual({ outTimeSeconds: 3.018594, speed: 16.1, done: false });
    expect(parseProgressBlock(["out_time_us=N/A", "speed=N/A", "progress=end"])).toEqual({
      outTimeSeconds: 0,
      done: true,
    });
    expect(parseProgressBlock(["frame=1"])).toBeNull();
  });

  it("reports progress while running and resolves on success", async () => {
    const seen: number[] = [];
    await runFfmpeg(
      [
        "-nostdin",
        "-v",
        "error",
        "-progress",
        "pipe:1",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=64x64:rate=10:duration=1",
        "-f",
        "null",
        "-",
      ],
      {
        onProgress: (p) => seen.push(p.outTimeSeconds),
      },
    );
    expect(seen.at(-1)).toBeGreaterThan(0.8);
  });

  it("rejects with stderr when ffmpeg fails, and with FfmpegAbortedError when stopped", async () => {
    await expect(runFfmpeg(["-nostdin", "-i", "/nonexistent.mp4", "-f", "null", "-"])).rejects.toBeInstanceOf(
      FfmpegError,
    );
    const controller = new AbortController();
    const running = runFfmpeg(
      ["-nostdin", "-re", "-f", "lavfi", "-i", "testsrc2=size=64x64:rate=10", "-f", "null", "-"],
      {
        signal: controller.signal,
      },
    );
    setTimeout(() => controller.abort(), 200);
    await expect(running).rejects.toBeInstanceOf(FfmpegAbortedError);
  });
});
