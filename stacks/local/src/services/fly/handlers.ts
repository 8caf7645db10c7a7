/**
 * What each endpoint of the local Fly Machines API does to apps and machines, and what it refuses
 * as api.machines.dev refuses it. HTTP lives in `../fly-api.ts`; states and events in `lifecycle.ts`.
 */
import { randomUUID } from "node:crypto";
import { isFlyRegion, machineSizeProblem, memoryMbPerCpu } from "@tcoder/worker/fly/platform";
import {
  defaultStopSignal,
  type FlyMachine,
  isGone,
  isRunning,
  type MachineLifecycle,
  type MachineRecord,
  newInstanceId,
  newMachineId,
  present,
  stopGraceMs,
} from "./lifecycle.ts";
import type { FlyMachineConfig } from "./runners.ts";
import {
  createAppSchema,
  FlyError,
  type LaunchMachineInput,
  launchMachineSchema,
  listMachinesQuery,
  maxWaitSeconds,
  parse,
  stopMachineSchema,
  waitQuery,
} from "./schemas.ts";

/** An app as the API returns it (fly-go `App`). */
export interface FlyApp {
  id: string;
  name: string;
  network: string;
  status: "pending" | "deployed";
  machine_count: number;
  volume_count: number;
  organization: { name: string; slug: string };
}

interface AppRecord {
  id: string;
  name: string;
  orgSlug: string;
  network: string;
  machines: Map<string, MachineRecord>;
}

/** A query string as Hono's `c.req.queries()` gives it. */
type Queries = Record<string, string[]>;

const appNamePattern = /^[a-z0-9][a-z0-9-]{0,61}[a-z0-9]$/;
/** Where a machine goes when the request names no region (Fly picks one near the caller). */
const defaultRegion = "iad";

function presentApp(app: AppRecord): FlyApp {
  const live = [...app.machines.values()].filter((m) => m.state !== "destroyed");
  return {
    id: app.id,
    name: app.name,
    network: app.network,
    status: live.length > 0 ? "deployed" : "pending",
    machine_count: live.length,
    volume_count: 0,
    organization: { name: app.orgSlug, slug: app.orgSlug },
  };
}

/** Refuses a machine Fly would not create: an unknown region or a size Fly does not offer. */
function checkPlacement(region: string, config: LaunchMachineInput["config"]) {
  // Fly answers an unknown region with 422 (fly-apps/terraform-provider-fly#126).
  if (!isFlyRegion(region)) throw new FlyError(422, `region "${region}" not found`);
  const cpu_kind = config.guest?.cpu_kind ?? "shared";
  const cpus = config.guest?.cpus ?? 1;
  const perCpu = memoryMbPerCpu[cpu_kind as keyof typeof memoryMbPerCpu]?.min ?? 0;
  const problem = machineSizeProblem({ cpu_kind, cpus, memory_mb: config.guest?.memory_mb ?? cpus * perCpu });
  if (problem) throw new FlyError(400, `invalid config.guest: ${problem}`);
}

export function flyHandlers(lifecycle: MachineLifecycle) {
  const apps = new Map<string, AppRecord>();
  let nextPrivateIp = 2;

  function requireApp(name: string): AppRecord {
    const app = apps.get(name);
    if (!app) throw new FlyError(404, "app not found");
    return app;
  }

  function requireMachine(appName: string, id: string): MachineRecord {
    const m = requireApp(appName).machines.get(id);
    if (!m) throw new FlyError(404, "machine not found");
    return m;
  }

  /** Machine names are unique among an app's machines that are not destroyed, as on Fly. */
  function checkNameFree(app: AppRecord, name: string, self?: MachineRecord) {
    const holder = [...app.machines.values()].find((m) => m !== self && m.name === name && !isGone(m));
    if (holder) {
      throw new FlyError(
        409,
        `already_exists: unique machine name violation, machine ID ${holder.id} with name "${name}" already exists`,
      );
    }
  }

  return {
    listApps(query: Queries) {
      const org = query.org_slug?.[0];
      const listed = [...apps.values()].filter((a) => !org || a.orgSlug === org).map(presentApp);
      return { total_apps: listed.length, apps: listed };
    },

    createApp(body: unknown): FlyApp {
      const input = parse(createAppSchema, body);
      const name = input.app_name ?? input.name ?? "";
      if (!appNamePattern.test(name)) {
        throw new FlyError(400, "app_name must be 2-63 lowercase letters, digits or dashes");
      }
      if (apps.has(name)) throw new FlyError(422, `Name '${name}' has already been taken`, "name_taken");
      const app = { id: randomUUID(), name, orgSlug: input.org_slug, network: input.network || "default" };
      apps.set(name, { ...app, machines: new Map() });
      return presentApp(requireApp(name));
    },

    getApp: (appName: string) => presentApp(requireApp(appName)),

    async deleteApp(appName: string) {
      const app = requireApp(appName);
      for (const m of app.machines.values()) if (!isGone(m)) lifecycle.destroy(m);
      await Promise.all([...app.machines.values()].map((m) => m.work));
      apps.delete(appName);
    },

    /** Filters as Fly's list does: `include_deleted`, `region`, `state`, and `metadata.{key}=value`. */
    listMachines(appName: string, query: Queries): FlyMachine[] {
      const app = requireApp(appName);
      const filter = parse(listMachinesQuery, query, "query");
      const includeDeleted = filter.include_deleted !== undefined && filter.include_deleted[0] !== "false";
      const metadata = Object.entries(query)
        .filter(([key]) => key.startsWith("metadata."))
        .map(([key, values]) => [key.slice("metadata.".length), values[0]] as const);
      return [...app.machines.values()]
        .filter((m) => includeDeleted || m.state !== "destroyed")
        .filter((m) => !filter.region || filter.region.includes(m.region))
        .filter((m) => filter.state.length === 0 || filter.state.includes(m.state))
        .filter((m) => metadata.every(([key, value]) => m.config.metadata?.[key] === value))
        .map(present);
    },

    createMachine(appName: string, body: unknown): FlyMachine {
      const app = requireApp(appName);
      const input = parse(launchMachineSchema, body);
      const region = input.region ?? defaultRegion;
      checkPlacement(region, input.config);
      const id = newMachineId();
      const name = input.name ?? `${app.name}-${id.slice(0, 6)}`;
      checkNameFree(app, name);
      const now = new Date().toISOString();
      const m: MachineRecord = {
        id,
        name,
        appName: app.name,
        region,
        state: "created",
        instanceId: newInstanceId(),
        privateIp: `fdaa:0:1:a7b:${(nextPrivateIp++).toString(16)}::2`,
        config: input.config as FlyMachineConfig,
        createdAt: now,
        updatedAt: now,
        events: [],
        run: undefined,
        work: Promise.resolve(),
        restarts: 0,
      };
      lifecycle.record(m, { type: "launch", status: "created", source: "user" });
      app.machines.set(id, m);
      // Fly answers with the machine as created; it then boots unless told not to.
      const created = present(m);
      if (!input.skip_launch) lifecycle.launch(m, "user");
      return created;
    },

    getMachine: (appName: string, id: string) => present(requireMachine(appName, id)),

    /** A new config (and instance); a running machine restarts with it. */
    updateMachine(appName: string, id: string, body: unknown): FlyMachine {
      const m = requireMachine(appName, id);
      if (isGone(m)) throw new FlyError(412, `unable to update machine from current state: '${m.state}'`);
      const input = parse(launchMachineSchema, body);
      checkPlacement(m.region, input.config);
      if (input.name) checkNameFree(requireApp(appName), input.name, m);
      const wasRunning = isRunning(m);
      m.config = input.config as FlyMachineConfig;
      if (input.name) m.name = input.name;
      m.instanceId = newInstanceId();
      lifecycle.record(m, { type: "update", status: "completed", source: "user" });
      if (wasRunning) lifecycle.stop(m, m.config.stop_config?.signal ?? defaultStopSignal, stopGraceMs(m));
      if (wasRunning || !input.skip_launch) {
        m.restarts = 0;
        lifecycle.launch(m, "user");
      } else {
        lifecycle.touch(m);
      }
      return present(m);
    },

    /** Without `force` (or fly-admin's `kill`), only a machine that is not running may go. */
    deleteMachine(appName: string, id: string, query: Queries) {
      const m = requireMachine(appName, id);
      if (isGone(m)) throw new FlyError(404, "machine not found");
      const force = query.force?.[0] === "true" || query.kill?.[0] === "true";
      if (!force && (isRunning(m) || m.state === "stopping")) {
        throw new FlyError(
          412,
          `failed_precondition: unable to destroy machine, not currently stopped or suspended (state: '${m.state}')`,
        );
      }
      lifecycle.destroy(m);
      return { ok: true };
    },

    startMachine(appName: string, id: string) {
      const m = requireMachine(appName, id);
      const previous = m.state;
      if (isRunning(m)) return { previous_state: previous };
      if (previous !== "stopped" && previous !== "created") {
        throw new FlyError(412, `unable to start machine from current state: '${previous}'`);
      }
      m.restarts = 0;
      lifecycle.launch(m, "user");
      return { previous_state: previous };
    },

    /** A stop that names no signal sends `stop_config.signal`, else Fly's SIGINT. */
    stopMachine(appName: string, id: string, body: unknown) {
      const m = requireMachine(appName, id);
      const input = parse(stopMachineSchema, body ?? {});
      if (isGone(m)) throw new FlyError(412, `unable to stop machine from current state: '${m.state}'`);
      if (isRunning(m)) {
        const signal = input.signal ?? m.config.stop_config?.signal ?? defaultStopSignal;
        lifecycle.stop(m, signal, stopGraceMs(m, input.timeout));
      }
      return { ok: true };
    },

    /** Holds the request until the machine reaches a state, or answers 408 at the timeout. */
    async waitMachine(appName: string, id: string, query: Queries, signal: AbortSignal) {
      const m = requireMachine(appName, id);
      const wait = parse(waitQuery, query, "query");
      if (wait.state.includes("stopped") && !wait.instance_id?.[0]) {
        throw new FlyError(400, "instance_id must be specified when waiting for a machine to stop");
      }
      const timeoutSeconds = Math.min(wait.timeout?.[0] ?? maxWaitSeconds, maxWaitSeconds);
      if (!(await lifecycle.waitFor(m, wait.state, timeoutSeconds * 1000, signal))) {
        throw new FlyError(408, `deadline_exceeded: machine did not reach state ${wait.state.join("|")} in time`);
      }
      return { ok: true };
    },

    /** Machines of an app as GET would show them (destroyed ones included). */
    machinesOf: (appName: string) => [...(apps.get(appName)?.machines.values() ?? [])].map(present),

    /** Stops every running machine (SIGTERM, 1 s) and waits for all lifecycle work to finish. */
    async shutdown() {
      const all = [...apps.values()].flatMap((a) => [...a.machines.values()]);
      for (const m of all) if (isRunning(m) || m.state === "stopping") lifecycle.stop(m, "SIGTERM", 1_000);
      await Promise.all(all.map((m) => m.work));
    },
  };
}
