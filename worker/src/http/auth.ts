/**
 * Bearer authentication for the client API. `API_TOKEN` may hold several tokens (a rotation in
 * progress); the presented token is compared with every one of them, each comparison hashing both
 * sides first (hono's timingSafeEqual), so neither length, a matching prefix nor which token matched
 * is observable in timing. The request log names the key that matched by its fingerprint.
 */
import type { MiddlewareHandler } from "hono";
import { timingSafeEqual } from "hono/utils/buffer";
import { apiTokens } from "../bindings.ts";
import type { AppEnv } from "./context.ts";
import { ProblemError } from "./problem.ts";

const BEARER = /^Bearer +(\S+)\s*$/i;

/**
 * How logs name an API key: the first 8 hex digits of the token's SHA-256 (operators get the same
 * with `printf %s "$TOKEN" | sha256sum | cut -c1-8`). Never reversible to the token itself.
 */
export async function keyFingerprint(token: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(token));
  return [...new Uint8Array(digest).slice(0, 4)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

export const requireApiToken: MiddlewareHandler<AppEnv> = async (c, next) => {
  const presented = BEARER.exec(c.req.header("authorization") ?? "")?.[1];
  let matched = false;
  if (presented) {
    // Every configured token is compared, matched or not, so the time taken says nothing about which.
    for (const token of apiTokens(c.get("settings").API_TOKEN))
      if (await timingSafeEqual(token, presented)) matched = true;
  }
  if (!presented || !matched) {
    throw new ProblemError("unauthorized", {
      detail: presented ? "the bearer token is not valid" : "send `Authorization: Bearer <API_TOKEN>`",
      headers: {
        "www-authenticate": presented ? 'Bearer realm="tcoder", error="invalid_token"' : 'Bearer realm="tcoder"',
      },
    });
  }
  c.set("apiKey", await keyFingerprint(presented));
  await next();
};
