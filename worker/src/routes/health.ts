/** `GET /healthz`: liveness only. It touches no dependency and reads no setting. */
import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import type { AppEnv } from "../http/context.ts";

const Health = z.object({ ok: z.literal(true), service: z.literal("tcoder-control-plane") }).openapi("Health");

export const health = new OpenAPIHono<AppEnv>().openapi(
  createRoute({
    method: "get",
    path: "/",
    summary: "Liveness probe (no authentication)",
    responses: { 200: { description: "The worker is serving", content: { "application/json": { schema: Health } } } },
  }),
  (c) => c.json({ ok: true as const, service: "tcoder-control-plane" as const }, 200),
);
