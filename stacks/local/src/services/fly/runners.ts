/**
 * What runs a local Fly Machine. The API owns states; a runner only starts and stops the
 * program behind a machine and reports when it exits by itself.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { corePool, pinCores } from "./cores.ts";

/** The machine's config as the API stores it (Fly's `MachineConfig`, the parts we model). */
export interface FlyMachineConfig {
  image: string;
  env?: Record<string, string>;
  guest?: { cpu_kind?: string; cpus?: number; memory_mb?: number };
  restart?: { policy?: "no" | "always" | "on-failure"; max_retries?: number };
  auto_destroy?: boolean;
  metadata?: Record<string, string>;
  stop_config?: { signal?: string; timeout?: string | number };
  [field: string]: unknown;
}

/** What a runner learns about the machine it starts. */
export interface MachineLaunch {
  id: string;
  appName: string;
  region: string;
  instanceId: string;
  privateIp: string;
  config: FlyMachineConfig;
}

export interface MachineExit {
  /** The program's exit code; null when a signal ended it. */
  code: number | null;
  /** The signal that ended the program (e.g. "SIGKILL"), else null. */
  signal: string | null;
  /** The kernel's OOM killer struck inside the machine during this run (runners that can tell). */
  oomKilled?: boolean;
}

export interface RunningMachine {
  /** Settles when the program ends, whether by itself or because of `stop`. */
  exited: Promise<MachineExit>;
  /** Sends `signal`, then SIGKILL once `graceMs` has passed; resolves when the program is gone. */
  stop(signal: string, graceMs: number): Promise<void>;
}

export interface MachineRunner {
  start(machine: MachineLaunch): Promise<RunningMachine>;
}

/** The environment Fly gives every machine on top of `config.env`. */
export function flyMachineEnv(machine: MachineLaunch): Record<string, string> {
  return {
    FLY_MACHINE_ID: machine.id,
    FLY_ALLOC_ID: machine.id,
    FLY_APP_NAME: machine.appName,
    FLY_REGION: machine.region,
    FLY_IMAGE_REF: machine.config.image,
    FLY_PRIVATE_IP: machine.privateIp,
    FLY_MACHINE_VERSION: machine.instanceId,
  };
}

/** Receives each line a machine's program writes. */
export type MachineLog = (machineId: string, stream: "stdout" | "stderr", line: string) => void;

/** Hands each output line of a machine's program to `log`; without it the output is discarded. */
export function forwardOutput(child: ChildProcess, machineId: string, log: MachineLog | undefined) {
  for (const stream of ["stdout", "stderr"] as const) {
    const source = child[stream];
    if (!source) continue;
    if (log) createInterface({ input: source }).on("line", (line) => log(machineId, stream, line));
    else source.resume();
  }
}

export interface ProcessRunnerOptions {
  /** argv of the program every machine runs (the local stand-in for the image's CMD). */
  command: string[];
  cwd?: string;
  /** Extra environment under the machine's own (`config.env` and Fly's names win). */
  env?: Record<string, string>;
  /** Receives each output line; without it output is discarded. */
  log?: MachineLog;
}

/** Variables a process needs to find its tools; nothing else leaks from the host. */
const hostEnvNames = ["PATH", "HOME", "TMPDIR", "LANG", "TZ"] as const;

/**
 * Runs each machine as a child process (its own process group, so stop reaches its children).
 * A machine whose config sets `guest.cpus` runs under `taskset` on that many of the host's cores,
 * disjoint from the other running machines' while there are enough (cores.ts), so machines of a
 * given size compete for the host as Fly Machines of that size would not. A machine without
 * `guest.cpus` is not pinned: it may use every core, as the process runner always did.
 */
export function processRunner(opts: ProcessRunnerOptions): MachineRunner & {
  running(): number;
  /**
   * Signals a running machine's whole process group behind the API's back (default SIGKILL: a
   * crashed VM, for fault tests); the API sees the exit as a machine that died. False if not running.
   */
  kill(machineId: string, signal?: NodeJS.Signals): boolean;
} {
  const [program, ...args] = opts.command;
  if (!program) throw new Error("processRunner: command must name a program");
  const live = new Set<ChildProcess>();
  const byMachine = new Map<string, ChildProcess>();
  const cores = corePool();
  return {
    running: () => live.size,
    kill(machineId, signal = "SIGKILL") {
      const child = byMachine.get(machineId);
      if (child?.pid === undefined || child.exitCode !== null || child.signalCode !== null) return false;
      try {
        process.kill(-child.pid, signal);
        return true;
      } catch {
        return false;
      }
    },
    async start(machine) {
      const hostEnv: Record<string, string> = {};
      for (const name of hostEnvNames) {
        const value = process.env[name];
        if (value !== undefined) hostEnv[name] = value;
      }
      const cpus = machine.config.guest?.cpus;
      const pinned = cpus === undefined ? undefined : pinCores(cores, cpus);
      // taskset sets the affinity and execs the program: the machine's pid and group stay the program's.
      const argv = pinned ? ["taskset", "--cpu-list", pinned.cores.join(","), program, ...args] : [program, ...args];
      const child = spawn(argv[0] ?? program, argv.slice(1), {
        cwd: opts.cwd,
        env: { ...hostEnv, ...opts.env, ...machine.config.env, ...flyMachineEnv(machine) },
        stdio: ["ignore", "pipe", "pipe"],
        detached: true,
      });
      live.add(child);
      byMachine.set(machine.id, child);
      forwardOutput(child, machine.id, opts.log);
      const exited = new Promise<MachineExit>((resolve) => {
        child.once("exit", (code, signal) => {
          live.delete(child);
          pinned?.release();
          if (byMachine.get(machine.id) === child) byMachine.delete(machine.id);
          resolve({ code, signal });
        });
      });
      await new Promise<void>((resolve, reject) => {
        child.once("spawn", () => resolve());
        child.once("error", (err) => {
          live.delete(child);
          pinned?.release();
          reject(err);
        });
      });
      const signalGroup = (signal: NodeJS.Signals) => {
        try {
          if (child.pid !== undefined) process.kill(-child.pid, signal);
        } catch {
          // The group is already gone.
        }
      };
      return {
        exited,
        async stop(signal, graceMs) {
          if (child.exitCode !== null || child.signalCode !== null) return;
          signalGroup(signal as NodeJS.Signals);
          const timer = setTimeout(() => signalGroup("SIGKILL"), graceMs);
          await exited;
          clearTimeout(timer);
          // Whatever the program left behind in its group goes with it, as with a VM.
          signalGroup("SIGKILL");
        },
      };
    },
  };
}

/** Machines that idle until stopped; `exit` plays a program that ends by itself. */
export function noopRunner(): MachineRunner & {
  running(): string[];
  exit(machineId: string, code?: number): void;
} {
  const live = new Map<string, (exit: MachineExit) => void>();
  return {
    running: () => [...live.keys()],
    exit(machineId, code = 0) {
      live.get(machineId)?.({ code, signal: null });
    },
    async start(machine) {
      let finish: (exit: MachineExit) => void = () => {};
      const exited = new Promise<MachineExit>((resolve) => {
        finish = (exit) => {
          live.delete(machine.id);
          resolve(exit);
        };
      });
      live.set(machine.id, finish);
      return {
        exited,
        async stop(signal) {
          finish({ code: null, signal });
          await exited;
        },
      };
    },
  };
}
