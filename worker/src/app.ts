/**
 * The control-plane HTTP API: one router per resource, mounted under /v1, behind bearer auth
 * except the signed machine-events endpoint and token-signed playback. `/openapi.json` is
 * generated from the same zod schemas the routes validate with.
 */
import { OpenAPIHono } from "@hono/zod-openapi";
import { bodyLimit } from "hono/body-limit";
import { secureHeaders } from "hono/secure-headers";
import { MACHINE_EVENTS_PATH, PLAYBACK_PATH } from "./contract/index.ts";
import { requireApiToken } from "./http/auth.ts";
import { type AppEnv, readSettings, redisFromSettings } from "./http/context.ts";
import { onError, onNotFound } from "./http/errors.ts";
import { requestLog } from "./http/logging.ts";
import { ProblemError } from "./http/problem.ts";
import { CAPTIONS_PATH, captions } from "./routes/captions.ts";
import { webConsole } from "./routes/console.ts";
import { health } from "./routes/health.ts";
import { jobs } from "./routes/jobs.ts";
import { machineEvents } from "./routes/machine-events.ts";
import { multipart } from "./routes/multipart.ts";
import { playback } from "./routes/playback.ts";
import { stats } from "./routes/stats.ts";
import { uploads } from "./routes/uploads.ts";

/** JSON bodies are small (metadata is capped at 32 × 576 bytes); media never passes through here. */
export const MAX_BODY_BYTES = 64 * 1024;

const app = new OpenAPIHono<AppEnv>();

app.use("*", requestLog);
// nosniff, no-referrer, frame and cross-origin isolation headers on every answer (the console adds
// its CSP). Playback URLs are loaded by players on apps' own origins (<video>, <img>, hls.js), so
// they are the one cross-origin resource.
const isPlayback = (path: string) => path.startsWith(`${PLAYBACK_PATH}/`);
const apiHeaders = secureHeaders();
const playbackHeaders = secureHeaders({ crossOriginResourcePolicy: "cross-origin" });
app.use("*", (c, next) => (isPlayback(c.req.path) ? playbackHeaders : apiHeaders)(c, next));
app.onError(onError);
app.notFound(onNotFound);

app.use("/v1/*", async (c, next) => {
  const settings = readSettings(c.env);
  c.set("settings", settings);
  c.set("redis", redisFromSettings(settings));
  await next();
});
// Machines sign their events and players carry a playback token instead of the API's bearer token.
const ownCredentials = (path: string) => path === MACHINE_EVENTS_PATH || isPlayback(path);
app.use("/v1/*", async (c, next) => (ownCredentials(c.req.path) ? next() : requireApiToken(c, next)));
// A captions file may be larger than any JSON body; its route has a limit of its own.
const generalBodyLimit = bodyLimit({
  maxSize: MAX_BODY_BYTES,
  onError: () => {
    throw new ProblemError("payload_too_large", { detail: `request bodies are limited to ${MAX_BODY_BYTES} bytes` });
  },
});
app.use("/v1/*", async (c, next) => (CAPTIONS_PATH.test(c.req.path) ? next() : generalBodyLimit(c, next)));

app.openAPIRegistry.registerComponent("securitySchemes", "bearer", { type: "http", scheme: "bearer" });

const routes = app
  .route("/healthz", health)
  .route("/v1/uploads", uploads)
  .route("/v1/uploads", multipart)
  .route("/v1/jobs", jobs)
  .route("/v1/jobs", captions)
  .route("/v1/stats", stats)
  .route(PLAYBACK_PATH, playback)
  .route(MACHINE_EVENTS_PATH, machineEvents);

// The web console: outside /v1, so no bearer check on the page itself (it signs in with a token).
app.route("/", webConsole);

app.doc31("/openapi.json", {
  openapi: "3.1.0",
  info: {
    title: "tcoder control plane",
    version: "1.0.0",
    description: "Upload sources, follow transcoding jobs, receive signed callbacks.",
  },
});

export type AppType = typeof routes;
export { app };
