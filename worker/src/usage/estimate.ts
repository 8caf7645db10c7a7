/**
 * What a window of usage costs at the configured prices (docs/cloud.md lists the defaults and where
 * they come from). Machine time is the time attempts held a machine; idle time before a machine is
 * stopped and players' reads of public packages are not in it.
 */
import type { Settings } from "../bindings.ts";
import type { UsageTotals } from "../state/index.ts";

export type PriceSettings = Pick<
  Settings,
  "PRICE_MACHINE_SECOND_USD" | "PRICE_STORAGE_GB_MONTH_USD" | "PRICE_CLASS_A_MILLION_USD" | "PRICE_CLASS_B_MILLION_USD"
>;

export interface CostEstimate {
  machines: number;
  /** What today's stored bytes cost for the length of the window. */
  storage: number;
  /** Class A: every object written; Class B: one read of the source per attempt. */
  operations: number;
  total: number;
}

const GB = 1e9;
const DAYS_PER_MONTH = 30;
/** Rounded to a billionth of a dollar: enough for per-job amounts, without float noise. */
const usd = (value: number) => Math.round(value * 1e9) / 1e9;

export function estimateCost(
  usage: UsageTotals,
  storedBytes: number,
  windowDays: number,
  prices: PriceSettings,
): CostEstimate {
  const machines = usage.machineSeconds * prices.PRICE_MACHINE_SECOND_USD;
  const storage = (storedBytes / GB) * prices.PRICE_STORAGE_GB_MONTH_USD * (windowDays / DAYS_PER_MONTH);
  const operations =
    (usage.objectsWritten / 1e6) * prices.PRICE_CLASS_A_MILLION_USD +
    (usage.attempts / 1e6) * prices.PRICE_CLASS_B_MILLION_USD;
  return {
    machines: usd(machines),
    storage: usd(storage),
    operations: usd(operations),
    total: usd(machines + storage + operations),
  };
}
