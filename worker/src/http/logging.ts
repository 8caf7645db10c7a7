/**
 * One structured JSON line per request. Only method, path (never the query or headers, where
 * tokens and signatures travel), status, duration and the fingerprint of the API key used
 * (`key`, see auth.ts) are logged.
 */
import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "./context.ts";

export type LogLevel = "debug" | "info" | "warn" | "error";
const rank: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

const levelOf = (raw: string | undefined): LogLevel => (raw && raw in rank ? (raw as LogLevel) : "info");

export function log(
  configured: string | undefined,
  level: LogLevel,
  source: string,
  fields: Record<string, unknown>,
): void {
  if (rank[level] < rank[levelOf(configured)]) return;
  const line = JSON.stringify({ level, source, ...fields });
  if (level === "error") console.error(line);
  else if (level === "warn") console.warn(line);
  else console.log(line);
}

export const requestLog: MiddlewareHandler<AppEnv> = async (c, next) => {
  const started = Date.now();
  await next();
  const status = c.res.status;
  const key = c.get("apiKey");
  log(c.env?.LOG_LEVEL, status >= 500 ? "error" : "info", "api", {
    method: c.req.method,
    path: c.req.path,
    status,
    ms: Date.now() - started,
    ...(key ? { key } : {}),
  });
};
