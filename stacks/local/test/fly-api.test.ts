import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import FlyAdmin from "fly-admin/dist/client.js";
import { afterEach, describe, expect, it } from "vitest";
import { hostCores, parseCpuList } from "../src/services/fly/cores.ts";
import {
  type FlyMachine,
  type LocalFlyApi,
  type MachineRunner,
  noopRunner,
  processRunner,
  startFlyApi,
} from "../src/services/fly-api.ts";

const token = "fly-test-token";
const machineProgram = fileURLToPath(new URL("./fixtures/machine-program.mjs", import.meta.url));
const running: LocalFlyApi[] = [];

async function start(options: Partial<Parameters<typeof startFlyApi>[0]> = {}) {
  const api = await startFlyApi({ token, ...options });
  running.push(api);
  const call = async (method: string, path: string, body?: unknown, auth = `Bearer ${token}`) => {
    const res = await fetch(`${api.url}${path}`, {
      method,
      headers: { authorization: auth, ...(body === undefined ? {} : { "content-type": "application/json" }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    // biome-ignore lint/suspicious/noExplicitAny: tests read arbitrary JSON answers
    return { status: res.status, body: (text ? JSON.parse(text) : undefined) as any };
  };
  return { api, call };
}

afterEach(async () => {
  await Promise.all(running.splice(0).map((api) => api.stop()));
});

const machineConfig = {
  image: "tcoder-machine:local",
  env: { GREETING: "hi" },
  guest: { cpu_kind: "performance", cpus: 2, memory_mb: 4096 },
};

/** The cores a process may run on, as the kernel reports them. */
const allowedCores = async (pid: number) =>
  parseCpuList(/^Cpus_allowed_list:\s*(\S+)$/m.exec(await readFile(`/proc/${pid}/status`, "utf8"))?.[1] ?? "");

async function withApp(options: Partial<Parameters<typeof startFlyApi>[0]> = {}) {
  const ctx = await start(options);
  expect((await ctx.call("POST", "/v1/apps", { app_name: "tcoder-machines", org_slug: "personal" })).status).toBe(201);
  return ctx;
}

describe("local Fly Machines API: apps", () => {
  it("refuses calls without the bearer token with 401 and Fly's error JSON", async () => {
    const { call } = await start();
    const anonymous = await call("GET", "/v1/apps?org_slug=personal", undefined, "");
    expect(anonymous).toEqual({ status: 401, body: { error: "unauthorized" } });
    expect((await call("GET", "/v1/apps?org_slug=personal", undefined, "Bearer wrong")).status).toBe(401);
  });

  it("creates, reads, lists and deletes apps like api.machines.dev", async () => {
    const { call } = await start();
    const created = await call("POST", "/v1/apps", { app_name: "tcoder-machines", org_slug: "personal" });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({
      name: "tcoder-machines",
      organization: { slug: "personal" },
      machine_count: 0,
    });

    expect((await call("GET", "/v1/apps/tcoder-machines")).body).toMatchObject({ name: "tcoder-machines" });
    const listed = await call("GET", "/v1/apps?org_slug=personal");
    expect(listed.body.apps.map((a: { name: string }) => a.name)).toEqual(["tcoder-machines"]);
    expect((await call("GET", "/v1/apps?org_slug=other")).body.apps).toEqual([]);

    expect((await call("DELETE", "/v1/apps/tcoder-machines")).status).toBe(202);
    expect(await call("GET", "/v1/apps/tcoder-machines")).toEqual({ status: 404, body: { error: "app not found" } });
  });

  it("answers 422 name_taken when the app name already exists", async () => {
    const { call } = await start();
    await call("POST", "/v1/apps", { app_name: "tcoder-machines", org_slug: "personal" });
    const again = await call("POST", "/v1/apps", { app_name: "tcoder-machines", org_slug: "personal" });
    expect(again.status).toBe(422);
    expect(again.body.status).toBe("name_taken");
  });

  it("answers 400 to an app without org_slug or with an invalid name", async () => {
    const { call } = await start();
    expect((await call("POST", "/v1/apps", { app_name: "tcoder-machines" })).status).toBe(400);
    expect((await call("POST", "/v1/apps", { app_name: "Bad_Name", org_slug: "personal" })).status).toBe(400);
  });

  it("answers 404 for machines of an unknown app", async () => {
    const { call } = await start();
    expect(await call("GET", "/v1/apps/nope/machines")).toEqual({ status: 404, body: { error: "app not found" } });
  });
});

describe("local Fly Machines API: machines", () => {
  it("creates a machine that boots to started, with Fly's machine shape", async () => {
    const { call } = await withApp();
    const created = await call("POST", "/v1/apps/tcoder-machines/machines", { region: "iad", config: machineConfig });
    expect(created.status).toBe(200);
    const m = created.body as FlyMachine;
    expect(m.id).toMatch(/^[0-9a-f]{14}$/);
    expect(m.state).toBe("created");
    expect(m.config).toMatchObject(machineConfig);
    expect(m.image_ref).toMatchObject({ repository: "tcoder-machine", tag: "local" });

    const wait = await call("GET", `/v1/apps/tcoder-machines/machines/${m.id}/wait?state=started&timeout=10`);
    expect(wait.status).toBe(200);
    const got = await call("GET", `/v1/apps/tcoder-machines/machines/${m.id}`);
    expect(got.body).toMatchObject({ id: m.id, state: "started", region: "iad", instance_id: m.instance_id });
    expect(got.body.private_ip).toMatch(/^fdaa:/);
    expect(typeof got.body.created_at).toBe("string");
    expect(got.body.events.length).toBeGreaterThan(0);
  });

  it("keeps a skip_launch machine created, and a wait that is not satisfied answers 408", async () => {
    const { call } = await withApp();
    const { body: m } = await call("POST", "/v1/apps/tcoder-machines/machines", {
      config: machineConfig,
      skip_launch: true,
    });
    const wait = await call("GET", `/v1/apps/tcoder-machines/machines/${m.id}/wait?state=started&timeout=1`);
    expect(wait.status).toBe(408);
    expect(typeof wait.body.error).toBe("string");
    expect((await call("GET", `/v1/apps/tcoder-machines/machines/${m.id}`)).body.state).toBe("created");
  });

  it("stops, restarts and reports previous_state; starting a started machine is a harmless 200", async () => {
    const { call } = await withApp();
    const { body: m } = await call("POST", "/v1/apps/tcoder-machines/machines", { config: machineConfig });
    const base = `/v1/apps/tcoder-machines/machines/${m.id}`;
    await call("GET", `${base}/wait?state=started`);

    expect((await call("POST", `${base}/start`)).body).toEqual({ previous_state: "started" });
    expect((await call("POST", `${base}/stop`, { signal: "SIGTERM", timeout: "5s" })).body).toEqual({ ok: true });
    expect((await call("GET", `${base}/wait?state=stopped&instance_id=${m.instance_id}`)).status).toBe(200);
    expect((await call("GET", base)).body.state).toBe("stopped");

    const restarted = await call("POST", `${base}/start`);
    expect(restarted).toEqual({ status: 200, body: { previous_state: "stopped" } });
    expect((await call("GET", `${base}/wait?state=started`)).status).toBe(200);
  });

  it("requires instance_id to wait for stopped, as Fly does", async () => {
    const { call } = await withApp();
    const { body: m } = await call("POST", "/v1/apps/tcoder-machines/machines", { config: machineConfig });
    expect((await call("GET", `/v1/apps/tcoder-machines/machines/${m.id}/wait?state=stopped`)).status).toBe(400);
  });

  it("refuses to delete a started machine without force=true (412), then destroys it with force", async () => {
    const { call } = await withApp();
    const { body: m } = await call("POST", "/v1/apps/tcoder-machines/machines", { config: machineConfig });
    const base = `/v1/apps/tcoder-machines/machines/${m.id}`;
    await call("GET", `${base}/wait?state=started`);
    expect((await call("DELETE", base)).status).toBe(412);
    expect((await call("DELETE", `${base}?force=true`)).status).toBe(200);
    expect((await call("GET", `${base}/wait?state=destroyed`)).status).toBe(200);
    expect((await call("GET", "/v1/apps/tcoder-machines/machines")).body).toEqual([]);
    expect((await call("GET", "/v1/apps/tcoder-machines/machines?include_deleted=true")).body).toHaveLength(1);
  });

  it("deletes a stopped machine without force", async () => {
    const { call } = await withApp();
    const { body: m } = await call("POST", "/v1/apps/tcoder-machines/machines", {
      config: machineConfig,
      skip_launch: true,
    });
    expect((await call("DELETE", `/v1/apps/tcoder-machines/machines/${m.id}`)).status).toBe(200);
  });

  it("refuses to start a machine that is still stopping (412), like Fly", async () => {
    let releaseStop: () => void = () => {};
    const slowToStop: MachineRunner = {
      async start() {
        let exit: (e: { code: number | null; signal: string | null }) => void = () => {};
        const exited = new Promise<{ code: number | null; signal: string | null }>((r) => {
          exit = r;
        });
        return {
          exited,
          stop: (signal) =>
            new Promise<void>((resolve) => {
              releaseStop = () => {
                exit({ code: null, signal });
                resolve();
              };
            }),
        };
      },
    };
    const { call } = await withApp({ runner: slowToStop });
    const { body: m } = await call("POST", "/v1/apps/tcoder-machines/machines", { config: machineConfig });
    const base = `/v1/apps/tcoder-machines/machines/${m.id}`;
    await call("GET", `${base}/wait?state=started`);
    await call("POST", `${base}/stop`, {});
    expect((await call("GET", base)).body.state).toBe("stopping");
    const refused = await call("POST", `${base}/start`);
    expect(refused.status).toBe(412);
    expect(refused.body.error).toContain("stopping");
    releaseStop();
    expect((await call("GET", `${base}/wait?state=stopped&instance_id=${m.instance_id}`)).status).toBe(200);
  });

  it("updating a started machine restarts it with the new config and a new instance_id", async () => {
    const runner = noopRunner();
    const { call } = await withApp({ runner });
    const { body: m } = await call("POST", "/v1/apps/tcoder-machines/machines", { config: machineConfig });
    const base = `/v1/apps/tcoder-machines/machines/${m.id}`;
    await call("GET", `${base}/wait?state=started`);
    const updated = await call("POST", base, { config: { ...machineConfig, env: { GREETING: "hello" } } });
    expect(updated.status).toBe(200);
    expect(updated.body.instance_id).not.toBe(m.instance_id);
    expect((await call("GET", `${base}/wait?state=started`)).status).toBe(200);
    const now = await call("GET", base);
    expect(now.body).toMatchObject({ state: "started", config: { env: { GREETING: "hello" } } });
    expect(runner.running()).toEqual([m.id]);
  });

  it("answers 400 to an invalid machine body and 404 to an unknown machine", async () => {
    const { call } = await withApp();
    const invalid = await call("POST", "/v1/apps/tcoder-machines/machines", { config: { env: { A: "b" } } });
    expect(invalid.status).toBe(400);
    expect(invalid.body.error).toMatch(/config\.image/);
    expect(await call("POST", "/v1/apps/tcoder-machines/machines/0123456789abcd/start")).toEqual({
      status: 404,
      body: { error: "machine not found" },
    });
  });

  it("lists machines filtered by state", async () => {
    const { call } = await withApp();
    await call("POST", "/v1/apps/tcoder-machines/machines", { config: machineConfig, skip_launch: true });
    const { body: started } = await call("POST", "/v1/apps/tcoder-machines/machines", { config: machineConfig });
    await call("GET", `/v1/apps/tcoder-machines/machines/${started.id}/wait?state=started`);
    const list = await call("GET", "/v1/apps/tcoder-machines/machines?state=started");
    expect(list.body.map((m: FlyMachine) => m.id)).toEqual([started.id]);
    expect((await call("GET", "/v1/apps/tcoder-machines/machines")).body).toHaveLength(2);
  });

  it("a machine whose program exits by itself with restart policy no becomes stopped", async () => {
    const runner = noopRunner();
    const { call } = await withApp({ runner });
    const config = { ...machineConfig, restart: { policy: "no" } };
    const { body: m } = await call("POST", "/v1/apps/tcoder-machines/machines", { config });
    await call("GET", `/v1/apps/tcoder-machines/machines/${m.id}/wait?state=started`);
    runner.exit(m.id, 0);
    const stopped = await call(
      "GET",
      `/v1/apps/tcoder-machines/machines/${m.id}/wait?state=stopped&instance_id=${m.instance_id}`,
    );
    expect(stopped.status).toBe(200);
    expect(runner.running()).toEqual([]);
  });

  it("restarts a failed program under the default on-failure policy, and destroys an auto_destroy machine on exit", async () => {
    const runner = noopRunner();
    const { call, api } = await withApp({ runner });
    const { body: crashy } = await call("POST", "/v1/apps/tcoder-machines/machines", { config: machineConfig });
    const { body: oneShot } = await call("POST", "/v1/apps/tcoder-machines/machines", {
      config: { ...machineConfig, auto_destroy: true, restart: { policy: "no" } },
    });
    await call("GET", `/v1/apps/tcoder-machines/machines/${crashy.id}/wait?state=started`);
    await call("GET", `/v1/apps/tcoder-machines/machines/${oneShot.id}/wait?state=started`);

    runner.exit(crashy.id, 1);
    runner.exit(oneShot.id, 0);
    expect((await call("GET", `/v1/apps/tcoder-machines/machines/${oneShot.id}/wait?state=destroyed`)).status).toBe(
      200,
    );
    await expect.poll(() => runner.running()).toEqual([crashy.id]);
    const crashyNow = api.machines("tcoder-machines").find((m) => m.id === crashy.id);
    expect(crashyNow?.state).toBe("started");
    expect(crashyNow?.events.some((e) => e.type === "exit")).toBe(true);
  });

  it("counts calls per endpoint", async () => {
    const { call, api } = await withApp();
    const { body: m } = await call("POST", "/v1/apps/tcoder-machines/machines", { config: machineConfig });
    await call("GET", `/v1/apps/tcoder-machines/machines/${m.id}`);
    await call("GET", `/v1/apps/tcoder-machines/machines/${m.id}`);
    expect(api.calls()).toEqual({
      "POST /v1/apps": 1,
      "POST /v1/apps/{app}/machines": 1,
      "GET /v1/apps/{app}/machines/{id}": 2,
    });
    expect(api.totalCalls()).toBe(4);
    api.resetCalls();
    expect(api.totalCalls()).toBe(0);
  });

  it("injects 429/500 faults on the configured fraction of calls without changing state", async () => {
    const { call, api } = await withApp();
    api.setFaults({ rate: 1, statuses: [429] });
    const limited = await call("POST", "/v1/apps/tcoder-machines/machines", { config: machineConfig });
    expect(limited.status).toBe(429);
    api.setFaults({ rate: 0 });
    expect((await call("GET", "/v1/apps/tcoder-machines/machines")).body).toEqual([]);

    // Draws: call 1 passes (0.9 ≥ rate), call 2 is faulted (0.1) and picks statuses[0], call 3 passes.
    const draws = [0.9, 0.1, 0, 0.9];
    const { call: flaky } = await start({ faults: { rate: 0.5, statuses: [500] }, random: () => draws.shift() ?? 1 });
    const answers = [];
    for (let i = 0; i < 3; i++) answers.push((await flaky("GET", "/v1/apps?org_slug=personal")).status);
    expect(answers).toEqual([200, 500, 200]);
  });
});

describe("local Fly Machines API: what Fly refuses, through the fly-admin client", () => {
  const app_name = "tcoder-machines";
  async function withFlyAdmin() {
    const ctx = await withApp();
    return { ...ctx, fly: new FlyAdmin(token, { apiUrl: ctx.api.url }).Machine };
  }
  /** fly-admin throws `Error("<status>: <body>")` for a refused call. */
  const refusal = (promise: Promise<unknown>) =>
    promise.then(
      () => ({ status: 200, error: "" }),
      (err: Error) => {
        const [status = "", ...body] = err.message.split(": ");
        return { status: Number(status), error: String(JSON.parse(body.join(": ")).error) };
      },
    );

  it("answers 409 already_exists to a second machine with a taken name; a destroyed machine's name is free again", async () => {
    const { fly, call } = await withFlyAdmin();
    const first = await fly.createMachine({ app_name, name: "tcoder-one", region: "iad", config: machineConfig });
    const second = await refusal(fly.createMachine({ app_name, name: "tcoder-one", config: machineConfig }));
    expect(second.status).toBe(409);
    expect(second.error).toMatch(/^already_exists: .*"tcoder-one"/);
    expect((await fly.listMachines(app_name)).map((m) => m.id)).toEqual([first.id]);

    await fly.deleteMachine({ app_name, machine_id: first.id, force: true });
    // fly-admin's wait knows no "destroyed" state; Fly's API does.
    await call("GET", `/v1/apps/${app_name}/machines/${first.id}/wait?state=destroyed`);
    const again = await fly.createMachine({ app_name, name: "tcoder-one", config: machineConfig });
    expect(again.id).not.toBe(first.id);
  });

  it("answers 400 to machine sizes Fly does not offer and accepts the smallest and largest it does", async () => {
    const { fly } = await withFlyAdmin();
    const sized = (cpu_kind: "shared" | "performance", cpus: number, memory_mb: number) =>
      refusal(
        fly.createMachine({
          app_name,
          skip_launch: true,
          config: { ...machineConfig, guest: { cpu_kind, cpus, memory_mb } },
        }),
      );
    const refused = [
      await sized("performance", 2, 2048), // 2,048 MB per performance CPU at least
      await sized("shared", 2, 256), // 256 MB per shared CPU at least
      await sized("shared", 1, 4096), // 2,048 MB per shared CPU at most
      await sized("performance", 1, 16384), // 8,192 MB per performance CPU at most
      await sized("performance", 3, 6144), // not a Fly size
      await sized("shared", 16, 4096), // shared CPUs stop at 8
      await sized("shared", 1, 300), // not a multiple of 256
    ];
    expect(refused.map((r) => r.status)).toEqual([400, 400, 400, 400, 400, 400, 400]);
    expect(refused[0]?.error).toContain("minimum of 4096 MB for 2 performance CPUs");
    expect((await sized("shared", 1, 256)).status).toBe(200);
    expect((await sized("performance", 16, 131072)).status).toBe(200);
  });

  it("refuses a region Fly does not have (422) and places machines in the region asked for", async () => {
    const { fly } = await withFlyAdmin();
    const unknown = await refusal(fly.createMachine({ app_name, region: "xyz", config: machineConfig }));
    expect(unknown).toEqual({ status: 422, error: 'region "xyz" not found' });
    expect((await fly.createMachine({ app_name, region: "syd", config: machineConfig })).region).toBe("syd");
  });

  it("lists machines filtered by region and by metadata", async () => {
    const { fly } = await withFlyAdmin();
    const create = (region: string, role: string) =>
      fly.createMachine({ app_name, region, config: { ...machineConfig, metadata: { "tcoder-role": role } } });
    const iadWorker = await create("iad", "transcoder");
    const amsWorker = await create("ams", "transcoder");
    const amsOther = await create("ams", "other");
    const ids = (list: { id: string }[]) => list.map((m) => m.id).sort();

    expect(ids(await fly.listMachines({ app_name, region: "ams" }))).toEqual(ids([amsWorker, amsOther]));
    // fly-admin passes any other field through as a query parameter, as Fly's `metadata.{key}` filter needs.
    const byRole = { app_name, "metadata.tcoder-role": "transcoder" } as Parameters<typeof fly.listMachines>[0];
    expect(ids(await fly.listMachines(byRole))).toEqual(ids([iadWorker, amsWorker]));
    const both = { app_name, region: "ams", "metadata.tcoder-role": "transcoder" } as typeof byRole;
    expect(ids(await fly.listMachines(both))).toEqual([amsWorker.id]);
  });

  it("a stop that names no signal (no body at all) sends SIGINT, Fly's default", async () => {
    const { call, api } = await withApp();
    const { body: m } = await call("POST", "/v1/apps/tcoder-machines/machines", { config: machineConfig });
    const base = `/v1/apps/tcoder-machines/machines/${m.id}`;
    await call("GET", `${base}/wait?state=started`);
    const res = await fetch(`${api.url}${base}/stop`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}` },
    });
    expect(res.status).toBe(200);
    await call("GET", `${base}/wait?state=stopped&instance_id=${m.instance_id}`);
    const { body: stopped } = await call("GET", base);
    const requested = stopped.events.find(
      (e: { type: string; status: string }) => e.type === "stop" && e.status === "requested",
    );
    expect(requested.request).toEqual({ signal: "SIGINT" });
  });
});

describe("processRunner", () => {
  it("runs each machine as a process with config.env and Fly's variables, and stops it with SIGINT as Fly does", async () => {
    const dir = await mkdtemp(join(tmpdir(), "fly-runner-"));
    try {
      const report = join(dir, "report.txt");
      const { call } = await withApp({ runner: processRunner({ command: [process.execPath, machineProgram] }) });
      const { body: m } = await call("POST", "/v1/apps/tcoder-machines/machines", {
        region: "ams",
        config: { ...machineConfig, env: { GREETING: "hi", REPORT_FILE: report } },
      });
      const base = `/v1/apps/tcoder-machines/machines/${m.id}`;
      await call("GET", `${base}/wait?state=started`);
      await expect.poll(() => readFile(report, "utf8").catch(() => "")).toContain("FLY_MACHINE_ID");
      const reported = JSON.parse((await readFile(report, "utf8")).split("\n")[0] ?? "");
      expect(reported.env).toMatchObject({
        GREETING: "hi",
        FLY_MACHINE_ID: m.id,
        FLY_APP_NAME: "tcoder-machines",
        FLY_REGION: "ams",
        FLY_IMAGE_REF: "tcoder-machine:local",
        FLY_PRIVATE_IP: m.private_ip,
        FLY_MACHINE_VERSION: m.instance_id,
      });

      await call("POST", `${base}/stop`, {});
      expect((await call("GET", `${base}/wait?state=stopped&instance_id=${m.instance_id}`)).status).toBe(200);
      expect(await readFile(report, "utf8")).toContain("SIGINT");
      expect(() => process.kill(reported.pid, 0)).toThrow();
      const { body: stopped } = await call("GET", base);
      const exit = stopped.events.find((e: { type: string }) => e.type === "exit");
      expect(exit.request.exit_event).toMatchObject({ exit_code: 0, oom_killed: false, requested_stop: true });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("kills a program that ignores the stop signal once the grace period is over", async () => {
    const dir = await mkdtemp(join(tmpdir(), "fly-runner-"));
    try {
      const report = join(dir, "report.txt");
      const { call } = await withApp({ runner: processRunner({ command: [process.execPath, machineProgram] }) });
      const { body: m } = await call("POST", "/v1/apps/tcoder-machines/machines", {
        config: { ...machineConfig, env: { MACHINE_MODE: "ignore-term", REPORT_FILE: report } },
      });
      const base = `/v1/apps/tcoder-machines/machines/${m.id}`;
      await call("GET", `${base}/wait?state=started`);
      await expect.poll(() => readFile(report, "utf8").catch(() => "")).toContain("FLY_MACHINE_ID");
      await call("POST", `${base}/stop`, { signal: "SIGTERM", timeout: "300ms" });
      expect((await call("GET", `${base}/wait?state=stopped&instance_id=${m.instance_id}`)).status).toBe(200);
      const { pid } = JSON.parse((await readFile(report, "utf8")).split("\n")[0] ?? "");
      expect(await readFile(report, "utf8")).toContain("SIGTERM");
      expect(() => process.kill(pid, 0)).toThrow();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("pins each machine to guest.cpus cores of its own, and hands a stopped machine's cores to the next", async () => {
    const dir = await mkdtemp(join(tmpdir(), "fly-runner-"));
    try {
      const { call } = await withApp({ runner: processRunner({ command: [process.execPath, machineProgram] }) });
      const startMachine = async (name: string, guest?: { cpus: number }) => {
        const report = join(dir, `${name}.txt`);
        const { body: m } = await call("POST", "/v1/apps/tcoder-machines/machines", {
          config: { image: machineConfig.image, env: { REPORT_FILE: report }, ...(guest ? { guest } : {}) },
        });
        await call("GET", `/v1/apps/tcoder-machines/machines/${m.id}/wait?state=started`);
        await expect.poll(() => readFile(report, "utf8").catch(() => "")).toContain("FLY_MACHINE_ID");
        const { pid } = JSON.parse((await readFile(report, "utf8")).split("\n")[0] ?? "");
        return { id: m.id as string, instanceId: m.instance_id as string, cores: await allowedCores(pid) };
      };
      const host = hostCores();

      const [a, b] = await Promise.all([startMachine("a", { cpus: 1 }), startMachine("b", { cpus: 1 })]);
      expect(a.cores).toHaveLength(1);
      expect(b.cores).toHaveLength(1);
      if (host.length >= 2) expect(a.cores).not.toEqual(b.cores);
      expect(host).toEqual(expect.arrayContaining([...a.cores, ...b.cores]));

      await call("POST", `/v1/apps/tcoder-machines/machines/${a.id}/stop`, {});
      await call("GET", `/v1/apps/tcoder-machines/machines/${a.id}/wait?state=stopped&instance_id=${a.instanceId}`);
      const c = await startMachine("c", { cpus: 1 });
      expect(c.cores).toEqual(host.length >= 2 ? a.cores : b.cores);

      // Without guest.cpus a machine is not pinned: it may run on every core this process may.
      expect((await startMachine("unsized")).cores).toEqual(host);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("a program that exits by itself leaves its machine stopped (restart policy no)", async () => {
    const { call } = await withApp({ runner: processRunner({ command: [process.execPath, machineProgram] }) });
    const { body: m } = await call("POST", "/v1/apps/tcoder-machines/machines", {
      config: { ...machineConfig, env: { MACHINE_MODE: "exit", EXIT_CODE: "0" }, restart: { policy: "no" } },
    });
    const wait = await call(
      "GET",
      `/v1/apps/tcoder-machines/machines/${m.id}/wait?state=stopped&instance_id=${m.instance_id}`,
    );
    expect(wait.status).toBe(200);
  });
});
