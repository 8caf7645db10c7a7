import { machineEnv } from "@tcoder/worker/bindings";
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../src/config.ts";

const validEnv = {
  UPSTASH_REDIS_REST_URL: "http://127.0.0.1:8079",
  UPSTASH_REDIS_REST_TOKEN: "token",
  S3_ENDPOINT: "http://127.0.0.1:9000",
  S3_REGION: "auto",
  S3_ACCESS_KEY_ID: "key",
  S3_SECRET_ACCESS_KEY: "secret",
  INPUT_BUCKET: "inputs",
  OUTPUT_BUCKET: "outputs",
  OUTPUTS_BASE_URL: "http://127.0.0.1:9000/outputs",
  CONTROL_PLANE_URL: "http://127.0.0.1:8787",
  MACHINE_EVENTS_SECRET: "0123456789abcdef0123",
  JOB_LEASE_SECONDS: "60",
  MACHINE_IDLE_STOP_SECONDS: "300",
  FLY_MACHINE_ID: "m-1",
};

describe("loadConfig", () => {
  it("reads every name the control plane gives a machine, with defaults for tuning", () => {
    const config = loadConfig(validEnv);
    expect(config).toMatchObject({ JOB_LEASE_SECONDS: 60, MACHINE_IDLE_STOP_SECONDS: 300, FLY_MACHINE_ID: "m-1" });
    expect(config.MAX_DURATION_SECONDS).toBe(14_400);
    expect(config.MAX_PIXELS).toBe(4096 * 2304);
    expect(config.X264_PRESET).toBe("medium");
    for (const name of machineEnv) expect(config).toHaveProperty(name);
  });

  it("names every missing and every bad variable at once", () => {
    const { S3_ENDPOINT: _, FLY_MACHINE_ID: __, ...rest } = validEnv;
    const env = { ...rest, JOB_LEASE_SECONDS: "soon", MACHINE_EVENTS_SECRET: "" };
    let error: unknown;
    try {
      loadConfig(env);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const problems = (error as ConfigError).problems;
    expect(problems).toEqual(
      expect.arrayContaining([
        "S3_ENDPOINT is missing",
        "FLY_MACHINE_ID is missing",
        "MACHINE_EVENTS_SECRET is missing",
        expect.stringMatching(/^JOB_LEASE_SECONDS is invalid/),
      ]),
    );
    expect(problems).toHaveLength(4);
  });
});
