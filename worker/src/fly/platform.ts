/**
 * What the Fly platform accepts for a machine: its size (cpu kind, cpus, memory) and its region.
 * One definition, read by the local Fly Machines API (which refuses what Fly refuses) and by the
 * policy pack (which stops a stack whose settings Fly would refuse before anything is deployed).
 */

export const cpuKinds = ["shared", "performance"] as const;
export type CpuKind = (typeof cpuKinds)[number];

/**
 * Memory per CPU, in MB. Fly's machine sizing guide (fly.io/docs/machines/guides-examples/machine-sizing):
 * "Memory limits are 2gb * shared CPU size or 8gb * performance CPU size. Minimum memory is 256m *
 * shared CPU size or 2048m * performance CPU size." The same numbers are superfly/fly-go's
 * MIN_MEMORY_MB_PER_SHARED_CPU, MIN_MEMORY_MB_PER_CPU, MAX_MEMORY_MB_PER_SHARED_CPU and
 * MAX_MEMORY_MB_PER_CPU (machine_types.go).
 */
export const memoryMbPerCpu: Record<CpuKind, { min: number; max: number }> = {
  shared: { min: 256, max: 2048 },
  performance: { min: 2048, max: 8192 },
};

/** Fly's machine sizes (fly-go `MachinePresets`): shared-cpu-1x..8x, performance-1x..16x. */
export const cpuCounts: Record<CpuKind, readonly number[]> = {
  shared: [1, 2, 4, 6, 8],
  performance: [1, 2, 4, 6, 8, 10, 12, 14, 16],
};

/** `memory_mb` must be a multiple of this (Fly's `MachineGuest` schema). */
export const memoryStepMb = 256;

export interface MachineSize {
  cpu_kind: string;
  cpus: number;
  memory_mb: number;
}

/** Why Fly would refuse a machine of this size, or undefined when it would accept it. */
export function machineSizeProblem(size: MachineSize): string | undefined {
  const kind = cpuKinds.find((k) => k === size.cpu_kind);
  if (!kind) return `cpu_kind "${size.cpu_kind}" is not one of ${cpuKinds.join(", ")}`;
  if (!cpuCounts[kind].includes(size.cpus)) {
    return `${size.cpus} ${kind} CPUs is not a machine size; choose one of ${cpuCounts[kind].join(", ")}`;
  }
  if (!Number.isInteger(size.memory_mb) || size.memory_mb % memoryStepMb !== 0) {
    return `memory_mb ${size.memory_mb} is not a multiple of ${memoryStepMb}`;
  }
  const { min, max } = memoryMbPerCpu[kind];
  if (size.memory_mb < size.cpus * min) {
    return `memory_mb ${size.memory_mb} is below the minimum of ${size.cpus * min} MB for ${size.cpus} ${kind} CPUs (${min} MB each)`;
  }
  if (size.memory_mb > size.cpus * max) {
    return `memory_mb ${size.memory_mb} is above the maximum of ${size.cpus * max} MB for ${size.cpus} ${kind} CPUs (${max} MB each)`;
  }
  return undefined;
}

/**
 * Fly's regions (fly.io/docs/reference/regions, as `fly platform regions` lists them). A machine
 * asked for anywhere else is refused.
 */
export const flyRegions = [
  "ams",
  "arn",
  "atl",
  "bog",
  "bom",
  "bos",
  "cdg",
  "den",
  "dfw",
  "ewr",
  "eze",
  "fra",
  "gdl",
  "gig",
  "gru",
  "hkg",
  "iad",
  "jnb",
  "lax",
  "lhr",
  "mad",
  "mia",
  "nrt",
  "ord",
  "otp",
  "phx",
  "qro",
  "scl",
  "sea",
  "sin",
  "sjc",
  "syd",
  "waw",
  "yul",
  "yyz",
] as const;

export const isFlyRegion = (region: string): boolean => (flyRegions as readonly string[]).includes(region);
