/**
 * The web console (worker/console): `GET /` is the page, `GET /console/app.js` its one script.
 * Both are inlined into the worker bundle at build time (`__TCODER_CONSOLE__`, see bundle.ts), so
 * the console is served from the API's own origin and calls the API without CORS. Running the app
 * unbundled (unit tests) has no console; those routes answer 404 then.
 */
import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import { secureHeaders } from "hono/secure-headers";
import type { AppEnv } from "../http/context.ts";
import { readSettings } from "../http/context.ts";
import { problemContent, problemResponse } from "../http/problem.ts";

declare const __TCODER_CONSOLE__: { html: string; js: string } | undefined;

const assets = typeof __TCODER_CONSOLE__ === "undefined" ? null : __TCODER_CONSOLE__;

const origin = (url: string) => {
  try {
    return new URL(url).origin;
  } catch {
    return "";
  }
};

/** The origins of the object store's S3 endpoint (presigned uploads) and of the outputs. */
function storeOrigins(env: AppEnv["Bindings"]): string {
  const settings = readSettings(env);
  return [origin(settings.S3_ENDPOINT), origin(settings.OUTPUTS_BASE_URL)].filter(Boolean).join(" ");
}
const store = (c: Context<AppEnv>) => storeOrigins(c.env);

/**
 * The page may talk to the API (self), PUT to the object store (presigned uploads) and read
 * outputs; nothing else, and no inline script. The other headers are the app's (`secureHeaders`).
 */
const consolePolicy = secureHeaders({
  contentSecurityPolicy: {
    defaultSrc: ["'none'"],
    scriptSrc: ["'self'"],
    styleSrc: ["'self'", "'unsafe-inline'"],
    connectSrc: ["'self'", store],
    imgSrc: ["'self'", "data:", store],
    // data: for the empty `<track src="data:,WEBVTT">` hls.js gives each subtitle track it renders
    // (so Chrome and Safari keep the cues it adds).
    mediaSrc: ["'self'", "blob:", "data:", store],
    baseUri: ["'none'"],
    formAction: ["'self'"],
    frameAncestors: ["'none'"],
  },
});

const notBuilt = () => problemResponse("not_found", { detail: "the console is only part of the built worker bundle" });

const asset = (path: string, summary: string, mediaType: string) =>
  createRoute({
    method: "get",
    path,
    summary,
    responses: {
      200: { description: summary, content: { [mediaType]: { schema: z.string() } } },
      404: problemContent("not_found (an unbundled app has no console)"),
    },
  });

export const webConsole = new OpenAPIHono<AppEnv>();
webConsole.use("/", consolePolicy);
webConsole
  .openapi(asset("/", "The web console (no authentication; it signs in with an API token)", "text/html"), (c) => {
    if (!assets) return notBuilt();
    return c.html(assets.html, 200, { "cache-control": "no-cache" });
  })
  .openapi(asset("/console/app.js", "The web console's script", "text/javascript"), (c) => {
    if (!assets) return notBuilt();
    return c.body(assets.js, 200, {
      "content-type": "text/javascript; charset=utf-8",
      "cache-control": "no-cache",
    });
  });
