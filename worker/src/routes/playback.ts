/**
 * `GET /v1/playback/{jobId}/{path}?token=…`: the files of a signed job's package, served from the
 * bucket without public access. No bearer token: the expiring playback token is the credential
 * (contract/playback.ts), checked before anything is read, so a missing, tampered or expired one is
 * a 403 with nothing served. Playlists come back with the same token on every URI they list (so
 * hls.js, Safari and ffmpeg resolve them unchanged); media is streamed with `Range` passed through.
 */
import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import { cors } from "hono/cors";
import { addTokenToPlaylist, PLAYBACK_TOKEN_PARAM, packageBucketVar, verifyPlaybackToken } from "../contract/index.ts";
import type { AppEnv } from "../http/context.ts";
import { JOB_ID_PATTERN } from "../http/job-id.ts";
import { ProblemError, problemContent } from "../http/problem.ts";
import { outputPrefixFor } from "../state/keys.ts";
import { fetchObject, StorageError } from "../storage/s3.ts";

const route = createRoute({
  method: "get",
  path: "/{jobId}/{path}",
  summary: "A file of a signed job's package (also HEAD; Range supported)",
  description:
    "`path` is the file's key below `outputs/<jobId>/`, e.g. `1/hls/master.m3u8`. Playlists (.m3u8, .vtt) " +
    "are rewritten so every URI they list carries the same token.",
  request: {
    params: z.object({
      jobId: z.string().openapi({ param: { name: "jobId", in: "path" } }),
      path: z.string().openapi({ param: { name: "path", in: "path" }, example: "1/hls/master.m3u8" }),
    }),
    query: z.object({ [PLAYBACK_TOKEN_PARAM]: z.string().openapi({ example: "1767003600.Xq3…" }) }),
  },
  responses: {
    200: { description: "The file" },
    206: { description: "The requested byte range of the file" },
    403: problemContent("invalid_playback_token"),
    404: problemContent("playback_not_found"),
    502: problemContent("storage_unavailable"),
  },
});

/** Headers of the stored object a player needs to see. */
const RELAYED = ["content-type", "content-length", "content-range", "accept-ranges", "etag", "last-modified"];

const playlistKind = (path: string): "m3u8" | "vtt" | null =>
  path.endsWith(".m3u8") ? "m3u8" : path.endsWith(".vtt") ? "vtt" : null;

const notFound = () => new ProblemError("playback_not_found", { detail: "no such file in this job's package" });

export const playback = new OpenAPIHono<AppEnv>();

// Registered for the document only: the path parameter spans several segments (`1/hls/master.m3u8`).
playback.openAPIRegistry.registerPath(route);

// Players on other origins read these with the token as their only credential (no cookies).
playback.use(
  "*",
  cors({
    origin: "*",
    allowMethods: ["GET", "HEAD", "OPTIONS"],
    allowHeaders: ["range"],
    exposeHeaders: ["content-length", "content-range", "accept-ranges", "etag"],
    maxAge: 3600,
  }),
);

playback.get("/:jobId/:path{.+}", async (c) => {
  const { jobId, path } = c.req.param();
  const settings = c.get("settings");
  const nowSeconds = Math.floor(Date.now() / 1000);
  const token = c.req.query(PLAYBACK_TOKEN_PARAM);
  const check = await verifyPlaybackToken(settings.PLAYBACK_SIGNING_SECRET, jobId, token, nowSeconds);
  if (!check.ok || !token)
    throw new ProblemError("invalid_playback_token", {
      detail: `playback token ${check.ok ? "missing" : check.reason}`,
    });
  if (
    !JOB_ID_PATTERN.test(jobId) ||
    path.split("/").some((segment) => segment === "" || segment === "." || segment === "..")
  )
    throw notFound();

  const kind = playlistKind(path);
  const head = c.req.method === "HEAD";
  let stored: Response;
  try {
    stored = await fetchObject(settings, settings[packageBucketVar("signed")], `${outputPrefixFor(jobId)}${path}`, {
      // A playlist is read whole even for HEAD: its length is the rewritten one's.
      method: head && !kind ? "HEAD" : "GET",
      // A rewritten playlist has other bytes than the stored one: it is always served whole.
      range: kind ? undefined : c.req.header("range"),
    });
  } catch (err) {
    if (err instanceof StorageError)
      throw new ProblemError("storage_unavailable", { detail: "the package could not be read" });
    throw err;
  }
  if (stored.status === 404) {
    await stored.body?.cancel();
    throw notFound();
  }
  if (!stored.ok && stored.status !== 416) {
    await stored.body?.cancel();
    throw new ProblemError("storage_unavailable", { detail: `the store answered ${stored.status}` });
  }

  const headers = new Headers();
  for (const name of RELAYED) {
    const value = stored.headers.get(name);
    if (value !== null) headers.set(name, value);
  }
  // Never cached past the token's life, and never by a shared cache (the URL is a credential).
  headers.set("cache-control", `private, max-age=${Math.max(0, Math.min(check.expiresAt - nowSeconds, 86_400))}`);
  if (!kind || !stored.ok) return new Response(head ? null : stored.body, { status: stored.status, headers });

  const rewritten = new TextEncoder().encode(addTokenToPlaylist(await stored.text(), kind, token));
  headers.delete("etag");
  headers.delete("content-range");
  headers.set("content-length", String(rewritten.byteLength));
  return new Response(head ? null : rewritten, { status: 200, headers });
});
