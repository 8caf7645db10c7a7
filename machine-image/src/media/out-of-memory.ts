/**
 * Whether the kernel's OOM killer struck, and how much memory the machine has. ffmpeg killed by a
 * signal nobody sent is most often the OOM killer; counting its kills before and after a run tells
 * that apart from other deaths, so a job that needs more memory than the machine has fails with
 * `out_of_memory` and says so instead of being retried on the same too-small machine.
 *
 * The counters are read where the machine sees them: its memory cgroup (cgroup v2 `memory.events`,
 * v1 `memory.oom_control`: a container's own) first, else the kernel's (`/proc/vmstat`: a VM's).
 */
import { readFile } from "node:fs/promises";
import { totalmem } from "node:os";

const counters = [
  { path: "/sys/fs/cgroup/memory.events", field: "oom_kill" },
  { path: "/sys/fs/cgroup/memory/memory.oom_control", field: "oom_kill" },
  { path: "/proc/vmstat", field: "oom_kill" },
] as const;

const limits = ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"] as const;

/** OOM kills so far, from the first counter this machine has; undefined when none can be read. */
export async function oomKillCount(): Promise<number | undefined> {
  for (const { path, field } of counters) {
    const text = await readFile(path, "utf8").catch(() => null);
    const value = text === null ? undefined : new RegExp(`^${field} (\\d+)$`, "m").exec(text)?.[1];
    if (value !== undefined) return Number(value);
  }
  return undefined;
}

/** The memory this machine may use, in bytes: its cgroup's limit when it has one, else all RAM. */
export async function machineMemoryBytes(): Promise<number> {
  for (const path of limits) {
    const value = Number((await readFile(path, "utf8").catch(() => "")).trim());
    // "max" (v2) or a page-rounded 2^63 (v1) mean no limit.
    if (Number.isFinite(value) && value > 0 && value < totalmem()) return value;
  }
  return totalmem();
}
