/**
 * Turns everything thrown below a route into problem JSON with a stable code: our own
 * ProblemErrors, hono's HTTPExceptions (malformed JSON, body limit, media type gate) and zod
 * validation failures from the route validators.
 */
import type { Context, ErrorHandler, NotFoundHandler } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ZodError } from "zod";
import type { AppEnv } from "./context.ts";
import { log } from "./logging.ts";
import { ProblemError, problemResponse } from "./problem.ts";

export const onError: ErrorHandler<AppEnv> = (err, c) => {
  if (err instanceof ProblemError) return err.toResponse();
  if (err instanceof HTTPException) {
    if (err.status === 413) return problemResponse("payload_too_large", { detail: "the request body is too large" });
    if (err.status === 415)
      return problemResponse("unsupported_media_type", { detail: "send the request body as application/json" });
    if (err.status === 400 && /malformed json/i.test(err.message))
      return problemResponse("malformed_json", { detail: "the request body is not valid JSON" });
    if (err.status === 401) return problemResponse("unauthorized", { detail: err.message || "unauthorized" });
    return problemResponse("invalid_request", { status: err.status, detail: err.message || "bad request" });
  }
  log(c.env?.LOG_LEVEL, "error", "api", {
    event: "unhandled_error",
    path: c.req.path,
    error: err instanceof Error ? `${err.name}: ${err.message}` : "non-error thrown",
  });
  return problemResponse("internal", { detail: "an unexpected error occurred" });
};

export const onNotFound: NotFoundHandler<AppEnv> = (c) =>
  problemResponse("not_found", { detail: `no route for ${c.req.method} ${c.req.path}` });

/** A 400 `invalid_request` carrying the zod issues, for a body, query or path that failed its schema. */
export function invalidRequest(error: ZodError, target = "request"): Response {
  return problemResponse("invalid_request", {
    detail: `invalid ${target === "json" ? "body" : target}: ${error.issues
      .map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`)
      .join("; ")}`,
    issues: error.issues.map((i) => ({
      path: i.path.map((p) => (typeof p === "symbol" ? String(p) : p)),
      message: i.message,
    })),
  });
}

/** The validation hook every resource router uses: zod issues become a 400 `invalid_request`. */
export const validationHook = (
  result: { success: true } | { success: false; error: ZodError; target?: string },
  _c: Context<AppEnv>,
) => (result.success ? undefined : invalidRequest(result.error, result.target));
