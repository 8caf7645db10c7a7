/**
 * RFC 9457 problem details: every error the API returns is `application/problem+json` with a
 * stable `code` clients can branch on. The codes live here and nowhere else.
 */
import { z } from "@hono/zod-openapi";

export const problemCodes = {
  unauthorized: { status: 401, title: "Missing or invalid bearer token" },
  invalid_signature: { status: 401, title: "Missing, stale or forged event signature" },
  invalid_playback_token: { status: 403, title: "Missing, expired or forged playback token" },
  invalid_request: { status: 400, title: "The request does not match the schema" },
  malformed_json: { status: 400, title: "The request body is not valid JSON" },
  unknown_preset: { status: 400, title: "No such preset" },
  invalid_callback_url: { status: 400, title: "The callback URL is not allowed" },
  invalid_source_url: { status: 400, title: "The source URL is not allowed" },
  unsupported_media_type: { status: 415, title: "Unsupported media type" },
  payload_too_large: { status: 413, title: "Request body too large" },
  upload_too_large: { status: 413, title: "Declared upload size exceeds the limit" },
  not_found: { status: 404, title: "No such route" },
  job_not_found: { status: 404, title: "No such job" },
  input_not_found: { status: 404, title: "No such input object" },
  playback_not_found: { status: 404, title: "No such file in the job's package" },
  invalid_state: { status: 409, title: "The job is not in a state that allows this" },
  invalid_captions: { status: 422, title: "The captions are not a WebVTT or SubRip file with cues" },
  captions_too_large: { status: 413, title: "Captions file too large" },
  captions_not_found: { status: 404, title: "The job has no captions in this language" },
  captions_busy: { status: 409, title: "Another captions change to this job is in progress" },
  misconfigured: { status: 500, title: "The service is misconfigured" },
  storage_unavailable: { status: 502, title: "The object store did not answer" },
  internal: { status: 500, title: "Internal error" },
} as const satisfies Record<string, { status: number; title: string }>;

export type ProblemCode = keyof typeof problemCodes;
export const PROBLEM_CONTENT_TYPE = "application/problem+json";

export const Problem = z
  .object({
    type: z.string(),
    title: z.string(),
    status: z.number().int(),
    detail: z.string(),
    code: z.enum(Object.keys(problemCodes) as [ProblemCode, ...ProblemCode[]]),
    issues: z.array(z.object({ path: z.array(z.union([z.string(), z.number()])), message: z.string() })).optional(),
  })
  .openapi("Problem");
export type Problem = z.infer<typeof Problem>;

export interface ProblemOptions {
  detail: string;
  /** Overrides the code's usual status (e.g. unsupported_media_type is 400 for a declared field). */
  status?: number;
  issues?: Problem["issues"];
  headers?: Record<string, string>;
}

export function problemBody(code: ProblemCode, { detail, status, issues }: ProblemOptions): Problem {
  const known = problemCodes[code];
  return {
    // A URN, not a URL: there is no documentation host to dereference; docs/api.md lists the codes.
    type: `urn:tcoder:problem:${code}`,
    title: known.title,
    status: status ?? known.status,
    detail,
    code,
    ...(issues ? { issues } : {}),
  };
}

export function problemResponse(code: ProblemCode, options: ProblemOptions): Response {
  const body = problemBody(code, options);
  return new Response(JSON.stringify(body), {
    status: body.status,
    headers: { "content-type": PROBLEM_CONTENT_TYPE, ...options.headers },
  });
}

/** Thrown anywhere below a route; the app's error handler turns it into the response. */
export class ProblemError extends Error {
  readonly code: ProblemCode;
  readonly options: ProblemOptions;
  constructor(code: ProblemCode, options: ProblemOptions) {
    super(options.detail);
    this.name = "ProblemError";
    this.code = code;
    this.options = options;
  }
  toResponse(): Response {
    return problemResponse(this.code, this.options);
  }
}

/** OpenAPI response entry for a problem status, so the document lists every error shape. */
export const problemContent = (description: string) => ({
  description,
  content: { [PROBLEM_CONTENT_TYPE]: { schema: Problem } },
});
