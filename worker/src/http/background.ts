/**
 * Work that must not delay the response (admission after enqueue) runs under `waitUntil`.
 * Outside a worker (app.request() in tests without an execution context) it is awaited instead,
 * so nothing is silently dropped.
 */
import type { Context } from "hono";
import type { AppEnv } from "./context.ts";
import { log } from "./logging.ts";

export async function inBackground(c: Context<AppEnv>, name: string, work: () => Promise<unknown>): Promise<void> {
  const guarded = work().then(
    () => undefined,
    (err: unknown) =>
      log(c.env?.LOG_LEVEL, "error", "api", {
        event: `${name}_failed`,
        error: err instanceof Error ? `${err.name}: ${err.message}` : "non-error thrown",
      }),
  );
  let ctx: { waitUntil(promise: Promise<unknown>): void } | undefined;
  try {
    ctx = c.executionCtx;
  } catch {
    ctx = undefined;
  }
  if (ctx) ctx.waitUntil(guarded);
  else await guarded;
}
