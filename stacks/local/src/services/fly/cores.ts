/**
 * The host's cores as the local Fly API hands them to machines (`guest.cpus`): a Fly Machine owns
 * its vCPUs, so concurrently running machines get disjoint cores while there are enough, and share
 * the least-used ones when there are not (more machines × cpus than the host has).
 */
import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";

export interface CorePool {
  /** `cpus` cores (at most all of them) for a starting machine: the least held, lowest index first. */
  take(cpus: number): number[];
  /** Returns a stopped machine's cores. */
  give(cores: number[]): void;
}

/** Cores by their host numbers (`hostCores()` unless given), each handed to the machine holding the fewest. */
export function corePool(cores = hostCores()): CorePool {
  const holders = new Map(cores.map((core) => [core, 0]));
  return {
    take(cpus) {
      const chosen = [...holders]
        .sort(([coreA, heldA], [coreB, heldB]) => heldA - heldB || coreA - coreB)
        .slice(0, Math.max(1, Math.min(cpus, holders.size)))
        .map(([core]) => core)
        .sort((a, b) => a - b);
      for (const core of chosen) holders.set(core, (holders.get(core) ?? 0) + 1);
      return chosen;
    },
    give(taken) {
      for (const core of taken) holders.set(core, Math.max(0, (holders.get(core) ?? 0) - 1));
    },
  };
}

/**
 * The cores this process may run on: `Cpus_allowed_list` of /proc/self/status (a container or a
 * parent's taskset may allow cores that do not start at 0), else the first `availableParallelism()`.
 */
export function hostCores(): number[] {
  const status = (() => {
    try {
      return readFileSync("/proc/self/status", "utf8");
    } catch {
      return "";
    }
  })();
  const list = /^Cpus_allowed_list:\s*(\S+)$/m.exec(status)?.[1];
  const cores = list ? parseCpuList(list) : [];
  return cores.length > 0 ? cores : Array.from({ length: availableParallelism() }, (_, core) => core);
}

/** The kernel's cpu-list format: `0-3,8,10-11`. */
export function parseCpuList(list: string): number[] {
  return list.split(",").flatMap((range) => {
    const [first = Number.NaN, last = first] = range.split("-").map(Number);
    if (!Number.isInteger(first) || !Number.isInteger(last) || last < first) return [];
    return Array.from({ length: last - first + 1 }, (_, i) => first + i);
  });
}

/** A machine's cores once: released when it stops, however it stops (exit, stop, failed start). */
export function pinCores(pool: CorePool, cpus: number): { cores: number[]; release(): void } {
  const cores = pool.take(cpus);
  let released = false;
  return {
    cores,
    release() {
      if (!released) pool.give(cores);
      released = true;
    },
  };
}
