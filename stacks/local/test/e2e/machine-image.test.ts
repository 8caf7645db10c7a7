/**
 * The image that ships, built and run here: machine-image/Dockerfile builds with podman (from the
 * cache when its inputs are unchanged), its program starts as a non-root user and names every
 * setting it is missing, and `tcoder transcode --runner container` — machines as containers of that
 * image — publishes the same package as the default process runner.
 */
import { execFile } from "node:child_process";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { availableParallelism, tmpdir } from "node:os";
import { join, relative } from "node:path";
import { promisify } from "node:util";
import { machineEnv } from "@tcoder/worker/bindings";
import type { Job } from "@tcoder/worker/contract";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { containerRunner } from "../../src/services/fly/container-runner.ts";
import { type FlyMachine, type LocalFlyApi, startFlyApi } from "../../src/services/fly-api.ts";
import { ensureMachineImage, machineImageRef } from "../../src/services/machine-image.ts";
import { PodmanError, podman, podmanContainerFlags } from "../../src/services/podman.ts";
import { repoRoot } from "../../src/stack.ts";
import { makeClip } from "./clips.ts";

const run = promisify(execFile);
const tcoder = join(repoRoot, "stacks", "local", "bin", "tcoder.mjs");

/** What the machine program requires (config.ts: `machineEnv` plus the id Fly sets). */
const requiredSettings = [
  "UPSTASH_REDIS_REST_URL",
  "S3_ENDPOINT",
  "CONTROL_PLANE_URL",
  "MACHINE_EVENTS_SECRET",
  "JOB_LEASE_SECONDS",
  "FLY_MACHINE_ID",
];

describe("the machine image", () => {
  beforeAll(async () => {
    await ensureMachineImage();
  }, 900_000);

  it("starts its program as a non-root user, which names every missing setting and exits 2", async () => {
    const started = await podman(["run", "--rm", "--pull=never", ...podmanContainerFlags, machineImageRef]).then(
      () => ({ exitCode: 0, stderr: "" }),
      (error: unknown) => {
        if (!(error instanceof PodmanError)) throw error;
        return { exitCode: error.exitCode, stderr: error.stderr };
      },
    );
    expect(started.exitCode).toBe(2);
    for (const name of requiredSettings) expect(started.stderr).toContain(`${name} is missing`);

    const user = await podman(["run", "--rm", "--pull=never", ...podmanContainerFlags, machineImageRef, "id", "-u"]);
    expect(user.trim()).not.toBe("0");
  });
});

describe("containerRunner behind the local Fly API", () => {
  let fly: LocalFlyApi | undefined;
  afterAll(async () => {
    await fly?.stop();
  });

  it("pins each machine to its own core, limits its memory, and stops it with SIGINT as Fly does", async () => {
    const lines: string[] = [];
    fly = await startFlyApi({
      token: "t",
      runner: containerRunner({ log: (id, _s, line) => lines.push(`${id} ${line}`) }),
    });
    const call = async (method: string, path: string, body?: unknown) => {
      const res = await fetch(`${fly?.url}${path}`, {
        method,
        headers: { authorization: "Bearer t", "content-type": "application/json" },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      return (await res.json()) as FlyMachine;
    };
    await call("POST", "/v1/apps", { app_name: "tcoder-machines", org_slug: "personal" });
    // Settings that parse but lead nowhere: the program starts and keeps polling for work.
    const env = {
      ...Object.fromEntries(machineEnv.map((name) => [name, "http://127.0.0.1:9/"])),
      S3_REGION: "auto",
      MACHINE_EVENTS_SECRET: "0123456789abcdef0123",
      JOB_LEASE_SECONDS: "30",
      MACHINE_IDLE_STOP_SECONDS: "300",
      CHUNK_SECONDS: "30",
    };
    const config = { image: machineImageRef, env, guest: { cpu_kind: "shared", cpus: 1, memory_mb: 256 } };
    const machines = [
      await call("POST", "/v1/apps/tcoder-machines/machines", { config }),
      await call("POST", "/v1/apps/tcoder-machines/machines", { config }),
    ];
    // Each machine's container carries its machine id as a label.
    const containerOf = async (machineId: string) =>
      (await podman(["ps", "--filter", `label=tcoder.fly-machine=${machineId}`, "--format", "{{.Names}}"])).trim();
    const placed = await Promise.all(
      machines.map(async (m) => {
        // The program's first log line: its container is up (a busy machine may take seconds).
        await expect
          .poll(() => lines.some((line) => line.startsWith(`${m.id} `) && line.includes("machine started")), {
            timeout: 60_000,
          })
          .toBe(true);
        const name = await containerOf(m.id);
        const cpus = (await podman(["exec", name, "grep", "Cpus_allowed_list", "/proc/self/status"])).trim();
        const memory = (await podman(["inspect", "--format", "{{.HostConfig.Memory}}", name])).trim();
        return { cpus: cpus.split(/\s+/).at(-1), memory };
      }),
    );
    expect(placed.map((p) => p.memory)).toEqual([String(256 * 2 ** 20), String(256 * 2 ** 20)]);
    if (availableParallelism() >= 2) expect(placed[0]?.cpus).not.toBe(placed[1]?.cpus);

    const [first] = machines as [FlyMachine];
    await call("POST", `/v1/apps/tcoder-machines/machines/${first.id}/stop`, {});
    await fetch(
      `${fly.url}/v1/apps/tcoder-machines/machines/${first.id}/wait?state=stopped&instance_id=${first.instance_id}`,
      {
        headers: { authorization: "Bearer t" },
      },
    );
    const stopped = await call("GET", `/v1/apps/tcoder-machines/machines/${first.id}`);
    expect(stopped.state).toBe("stopped");
    expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^${first.id} .*SIGINT: stopping`)));
    const exit = stopped.events.find((event) => event.type === "exit");
    expect(exit?.request).toMatchObject({ exit_event: { exit_code: 0, oom_killed: false, requested_stop: true } });
  }, 120_000);
});

describe("tcoder transcode --runner container", () => {
  let dir: string;
  let clip: string;
  const transcoded: Partial<Record<"process" | "container", { job: Job; files: string[] }>> = {};

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "tcoder-runners-"));
    clip = await makeClip(join(dir, "clip.mp4"), { seconds: 2, size: "640x360", rate: 25 });
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const transcode = async (runner: "process" | "container") => {
    const out = join(dir, `out-${runner}`);
    const state = join(dir, `state-${runner}`);
    const { stdout } = await run(
      process.execPath,
      [tcoder, "transcode", clip, "--runner", runner, "--json", "--out", out, "--dir", state],
      { cwd: repoRoot, timeout: 600_000, maxBuffer: 64 * 1024 * 1024 },
    );
    const job = JSON.parse(stdout) as Job;
    const packageDir = join(out, job.id);
    const files = (await readdir(packageDir, { recursive: true, withFileTypes: true }))
      .filter((entry) => entry.isFile())
      .map((entry) => relative(packageDir, join(entry.parentPath, entry.name)))
      .sort();
    return { job, files };
  };

  it("completes with the same outputs as the process runner", async () => {
    transcoded.process = await transcode("process");
    transcoded.container = await transcode("container");
    const { process: byProcess, container: byContainer } = transcoded as Required<typeof transcoded>;

    expect(byContainer.job.state).toBe("completed");
    expect(byProcess.job.state).toBe("completed");
    expect(byContainer.job.probe).toEqual(byProcess.job.probe);
    const shape = (job: Job) => job.outputs?.renditions.map(({ name, width, height }) => ({ name, width, height }));
    expect(shape(byContainer.job)).toEqual(shape(byProcess.job));
    // The same package, file for file (names differ only by job id, which the paths leave out).
    expect(byContainer.files.length).toBeGreaterThan(5);
    expect(byContainer.files).toEqual(byProcess.files);
  }, 900_000);
});
