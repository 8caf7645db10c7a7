/**
 * Every failure the SDK reports is a `TcoderError` with a stable `code`: the API's problem `code`
 * (`job_not_found`, `invalid_state`, `unauthorized`, …) when the API answered, or one of the
 * SDK's own codes when it did not get that far.
 */

/** Codes the SDK itself produces (the API's codes come from its problem documents). */
export const clientErrorCodes = [
  "network",
  "timeout",
  "aborted",
  "upload_failed",
  "invalid_source",
  "unexpected_response",
] as const;
export type ClientErrorCode = (typeof clientErrorCodes)[number];

export interface ProblemDocument {
  type?: string;
  title?: string;
  status?: number;
  detail?: string;
  code?: string;
  issues?: { path: (string | number)[]; message: string }[];
}

export class TcoderError extends Error {
  override readonly name = "TcoderError";
  /** The API's problem code, or a `ClientErrorCode`. */
  readonly code: string;
  /** HTTP status when the API (or the store) answered. */
  readonly status: number | undefined;
  readonly problem: ProblemDocument | undefined;
  /** The job an interrupted upload belongs to, so `resumeUpload` can pick it up. */
  readonly jobId: string | undefined;

  constructor(
    code: string,
    message: string,
    opts: { status?: number; problem?: ProblemDocument; jobId?: string; cause?: unknown } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.code = code;
    this.status = opts.status;
    this.problem = opts.problem;
    this.jobId = opts.jobId;
  }
}

/** Builds the error for a non-2xx API answer from its problem document (or what came instead). */
export async function errorFromResponse(res: Response): Promise<TcoderError> {
  const text = await res.text().catch(() => "");
  let problem: ProblemDocument | undefined;
  try {
    const parsed = JSON.parse(text) as unknown;
    if (parsed && typeof parsed === "object") problem = parsed as ProblemDocument;
  } catch {
    // Not JSON: a proxy or the store answered; keep the status.
  }
  const code = typeof problem?.code === "string" ? problem.code : "unexpected_response";
  const message = problem?.detail ?? problem?.title ?? `HTTP ${res.status}${text ? `: ${text.slice(0, 200)}` : ""}`;
  return new TcoderError(code, message, { status: res.status, ...(problem ? { problem } : {}) });
}

export const abortedError = (signal: AbortSignal | undefined, jobId?: string): TcoderError =>
  new TcoderError("aborted", "the operation was aborted", {
    ...(jobId ? { jobId } : {}),
    ...(signal?.reason === undefined ? {} : { cause: signal.reason }),
  });
