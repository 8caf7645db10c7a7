/**
 * Runs each local Fly Machine as a podman container of the image its config names, the way Fly
 * runs a Machine from that image: the config's env plus Fly's own variables, `guest.cpus` pinned
 * to cores (`--cpuset-cpus`, distinct per machine while there are enough), `guest.memory_mb` as
 * the memory limit with no swap (a VM's RAM), an init as PID 1 that passes signals on, and a stop
 * that sends the signal and kills after the timeout. An exit reports the program's code, the
 * signal that ended it, and whether the kernel's OOM killer struck inside the machine.
 */
import { execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { constants, tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { podman, podmanContainerFlags, podmanGlobalFlags } from "../podman.ts";
import { corePool, pinCores } from "./cores.ts";
import { flyMachineEnv, forwardOutput, type MachineExit, type MachineLog, type MachineRunner } from "./runners.ts";

const execFileAsync = promisify(execFile);

export interface ContainerRunnerOptions {
  /** Extra environment under the machine's own (`config.env` and Fly's names win). */
  env?: Record<string, string>;
  /** Receives each output line; without it output is discarded. */
  log?: MachineLog;
}

/** What podman itself needs from this process's environment (the machine gets only `--env` names). */
const podmanHostEnv = () =>
  Object.fromEntries(
    ["PATH", "HOME", "TMPDIR", "XDG_RUNTIME_DIR", "CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF"].flatMap((name) => {
      const value = process.env[name];
      return value === undefined ? [] : [[name, value]];
    }),
  );

const signalNames = Object.fromEntries(Object.entries(constants.signals).map(([name, number]) => [number, name]));

export function containerRunner(opts: ContainerRunnerOptions = {}): MachineRunner & {
  running(): number;
  /**
   * Signals a running machine's container behind the API's back (default SIGKILL: a crashed VM, for
   * fault tests); the API sees the exit as a machine that died. False if not running.
   */
  kill(machineId: string, signal?: NodeJS.Signals): Promise<boolean>;
} {
  const cores = corePool();
  const live = new Map<string, { name: string; done: boolean }>();
  const signalContainer = (name: string, signal: string) =>
    podman(["kill", "--signal", signal, name]).then(
      () => true,
      () => false,
    );

  return {
    running: () => [...live.values()].filter((c) => !c.done).length,
    async kill(machineId, signal = "SIGKILL") {
      const container = live.get(machineId);
      if (!container || container.done) return false;
      return signalContainer(container.name, signal);
    },
    async start(machine) {
      const name = `tcoder-${machine.appName}-${machine.id}-${randomBytes(3).toString("hex")}`;
      const scratch = await mkdtemp(join(tmpdir(), "tcoder-container-"));
      const cidFile = join(scratch, "cid");
      const guest = machine.config.guest ?? {};
      // A machine created without guest.cpus gets one core, Fly's smallest size (shared-cpu-1x).
      const { cores: pinned, release } = pinCores(cores, guest.cpus ?? 1);
      const env = { ...opts.env, ...machine.config.env, ...flyMachineEnv(machine) };
      const args = [
        ...podmanGlobalFlags,
        "run",
        "--rm",
        "--pull=never",
        "--name",
        name,
        "--cidfile",
        cidFile,
        "--label",
        `tcoder.fly-machine=${machine.id}`,
        ...podmanContainerFlags,
        // Fly's init is PID 1 in every Machine and hands signals to the program; so is catatonit here.
        "--init",
        "--cpuset-cpus",
        pinned.join(","),
        ...(guest.memory_mb ? ["--memory", `${guest.memory_mb}m`, "--memory-swap", `${guest.memory_mb}m`] : []),
        // Names only: podman copies each value from its own environment, so no secret is on a command line.
        ...Object.keys(env).flatMap((key) => ["--env", key]),
        machine.config.image,
      ];
      const child = spawn("podman", args, {
        env: { ...podmanHostEnv(), ...env },
        stdio: ["ignore", "pipe", "pipe"],
      });
      const container = { name, done: false };
      live.set(machine.id, container);
      forwardOutput(child, machine.id, opts.log);
      const exited = new Promise<MachineExit>((resolve) => {
        child.once("close", async (code, signal) => {
          container.done = true;
          if (live.get(machine.id) === container) live.delete(machine.id);
          release();
          const id = (await readFile(cidFile, "utf8").catch(() => "")).trim();
          await rm(scratch, { recursive: true, force: true });
          const oomVictims = id === "" ? [] : await oomKillsIn(id);
          for (const task of oomVictims)
            opts.log?.(machine.id, "stderr", `[kernel] Out of memory: killed process (${task})`);
          const oomKilled = oomVictims.length > 0;
          // podman reports a program ended by a signal as 128 + its number, as a shell does.
          const bySignal = code !== null && code > 128 && code < 128 + 65 ? signalNames[code - 128] : undefined;
          resolve({
            code: bySignal ? null : code,
            signal: bySignal ?? signal,
            oomKilled,
          });
        });
      });
      await new Promise<void>((resolve, reject) => {
        child.once("spawn", () => resolve());
        child.once("error", (error) => {
          live.delete(machine.id);
          release();
          reject(error);
        });
      });
      return {
        exited,
        async stop(signal, graceMs) {
          if (container.done) return;
          await signalContainer(name, signal);
          const timer = setTimeout(() => void signalContainer(name, "SIGKILL"), graceMs);
          await exited;
          clearTimeout(timer);
        },
      };
    },
  };
}

/**
 * The kernel's own record of OOM kills inside one container (its memory cgroup is named after the
 * container id): `oom-kill:…,task_memcg=/…/libpod-<id>,task=<name>,pid=<pid>…` lines in the kernel
 * log, where a Fly Machine's OOM kills show too (its guest kernel's). podman's own OOMKilled flag
 * stays false on this machine's cgroup v1 layout. Returns the names of the killed tasks (none when the log cannot be read).
 */
export async function oomKillsIn(containerId: string): Promise<string[]> {
  const { stdout } = await execFileAsync("dmesg", ["--notime"], { maxBuffer: 32 * 1024 * 1024 }).catch(() => ({
    stdout: "",
  }));
  const killed: string[] = [];
  for (const line of stdout.split("\n")) {
    if (!line.startsWith("oom-kill:") || !line.includes(containerId)) continue;
    const memcg = /task_memcg=([^,]*)/.exec(line)?.[1] ?? "";
    if (!memcg.includes(containerId)) continue;
    killed.push(/task=([^,]*)/.exec(line)?.[1] ?? "?");
  }
  return killed;
}
