/**
 * Bearer authentication for the client API. The comparison hashes both sides first
 * (hono's timingSafeEqual), so neither length nor a matching prefix is observable in timing.
 */
import type { MiddlewareHandler } from "hono";
import { timingSafeEqual } from "hono/utils/buffer";
import type { AppEnv } from "./context.ts";
import { ProblemError } from "./problem.ts";

const BEARER = /^Bearer +(\S+)\s*$/i;

export const requireApiToken: MiddlewareHandler<AppEnv> = async (c, next) => {
  const presented = BEARER.exec(c.req.header("authorization") ?? "")?.[1];
  const expected = c.get("settings").API_TOKEN;
  if (!presented || !(await timingSafeEqual(expected, presented))) {
    throw new ProblemError("unauthorized", {
      detail: presented ? "the bearer token is not valid" : "send `Authorization: Bearer <API_TOKEN>`",
      headers: {
        "www-authenticate": presented ? 'Bearer realm="tcoder", error="invalid_token"' : 'Bearer realm="tcoder"',
      },
    });
  }
  await next();
};
