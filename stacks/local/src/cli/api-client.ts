/**
 * The slice of the public API the CLI needs, over fetch. It speaks only the documented HTTP API,
 * so it works the same against the local stack and a deployed one.
 */
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { Readable } from "node:stream";
import { createClient, TcoderError } from "@tcoder/client/node";
import type { Job, LoudnessSetting } from "@tcoder/worker/contract";
import { fetchOrExplain } from "./unreachable.ts";

export interface Problem {
  status: number;
  code: string;
  title?: string;
  detail?: string;
}

/** The API (or the store) answered with an error; the message is what a person should read. */
export class ApiError extends Error {
  override readonly name = "ApiError";
  constructor(
    readonly problem: Problem,
    message = `${problem.code}: ${problem.detail ?? problem.title ?? `HTTP ${problem.status}`}`,
  ) {
    super(message);
  }
}

export interface UploadTicket {
  jobId: string;
  /** null for a source over the stack's SINGLE_PUT_MAX_BYTES: it goes up in parts (`uploadInParts`). */
  upload: { url: string; method: "PUT"; headers: Record<string, string>; expiresAt: string } | null;
  job: Job;
}

export interface Stats {
  machines: Record<string, number>;
  maxMachines: number;
  queued: number;
  running: number;
  oldestQueuedAgeSeconds: number | null;
}

/** The SDK's refusals are as expected as the API's: one sentence, no "unexpected error". */
const asApiError = (error: unknown): never => {
  if (!(error instanceof TcoderError)) throw error;
  throw new ApiError({ status: error.status ?? 0, code: error.code }, `${error.code}: ${error.message}`);
};

export function createApiClient({ baseUrl, token }: { baseUrl: string; token: string }) {
  const origin = new URL(baseUrl).origin;
  const sdk = createClient({ baseUrl, token });
  const call = async <T>(method: string, path: string, body?: unknown): Promise<T> => {
    const response = await fetchOrExplain(
      new URL(path, baseUrl),
      {
        method,
        headers: {
          authorization: `Bearer ${token}`,
          ...(body === undefined ? {} : { "content-type": "application/json" }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      },
      "the API",
    );
    const text = await response.text();
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      // A proxy, a web page or another service: say so rather than print a JSON parse error.
      const type = response.headers.get("content-type") ?? "no content type";
      throw new ApiError(
        { status: response.status, code: "unexpected_response" },
        `${origin} answered ${method} ${path} with HTTP ${response.status} and ${type}, not tcoder's JSON: is it a tcoder API?`,
      );
    }
    if (!response.ok) {
      const problem = { ...(parsed as Partial<Problem> | undefined), status: response.status };
      const code = problem.code ?? `http_${response.status}`;
      if (response.status === 401)
        throw new ApiError(
          { ...problem, code },
          `the API at ${origin} refused the token (401 ${code}): pass its token with --token or TCODER_API_TOKEN`,
        );
      throw new ApiError({ ...problem, code });
    }
    return parsed as T;
  };

  return {
    health: async () => (await fetchOrExplain(new URL("/healthz", baseUrl), {}, "the API")).ok,
    createUpload: (input: {
      filename: string;
      contentType: string;
      size: number;
      preset?: string;
      loudness?: LoudnessSetting;
    }) => call<UploadTicket>("POST", "/v1/uploads", input),
    getJob: (id: string) => call<Job>("GET", `/v1/jobs/${encodeURIComponent(id)}`),
    listJobs: (query: { state?: string; limit?: number; cursor?: string } = {}) => {
      const params = new URLSearchParams();
      for (const [name, value] of Object.entries(query)) if (value !== undefined) params.set(name, String(value));
      return call<{ jobs: Job[]; nextCursor: string | null }>("GET", `/v1/jobs?${params}`);
    },
    cancel: (id: string) => call<Job>("POST", `/v1/jobs/${encodeURIComponent(id)}/cancel`),
    /** A job whose source the machine downloads from `url` (`POST /v1/jobs {url}`). */
    createJobFromUrl: (input: { url: string; preset?: string; loudness?: LoudnessSetting }) =>
      call<Job>("POST", "/v1/jobs", input),
    /** Adds captions to a completed job (the SDK's addCaptions: the body is the file, not JSON). */
    addCaptions: (id: string, captions: { language: string; text: string }) =>
      sdk.addCaptions(id, captions).catch(asApiError),
    /** Deletes the job's source and outputs; answers 204 (also for a job already deleted). */
    deleteJob: (id: string) => call<undefined>("DELETE", `/v1/jobs/${encodeURIComponent(id)}`),
    stats: () => call<Stats>("GET", "/v1/stats"),
    /** Starts the job's multipart upload and sends the file's parts with the SDK, reporting bytes sent. */
    async uploadInParts(jobId: string, path: string, onBytes: (sent: number, total: number) => void): Promise<void> {
      await call("POST", `/v1/uploads/${encodeURIComponent(jobId)}/multipart`, {});
      await sdk
        .resumeUpload(jobId, path, { onProgress: ({ loaded, total }) => onBytes(loaded, total) })
        .catch(asApiError);
    },
  };
}
export type ApiClient = ReturnType<typeof createApiClient>;

/**
 * Streams a file to a presigned PUT with exactly the signed headers, reporting bytes sent. A ticket
 * without one (a source over the stack's SINGLE_PUT_MAX_BYTES) goes through `uploadInParts` instead.
 */
export async function putFile(
  ticket: UploadTicket["upload"],
  path: string,
  onBytes: (sent: number, total: number) => void,
): Promise<void> {
  if (ticket === null) throw new Error(`the API gave no single PUT for ${path}: it goes up in parts (uploadInParts)`);
  const { size } = await stat(path);
  let sent = 0;
  const source = createReadStream(path);
  source.on("data", (chunk) => {
    sent += chunk.length;
    onBytes(sent, size);
  });
  const response = await fetchOrExplain(
    ticket.url,
    {
      method: ticket.method,
      headers: ticket.headers,
      body: Readable.toWeb(source) as ReadableStream<Uint8Array>,
      duplex: "half",
    } as RequestInit,
    "the upload URL",
  );
  if (!response.ok) {
    throw new ApiError({
      status: response.status,
      code: "upload_failed",
      detail: (await response.text()).slice(0, 500),
    });
  }
}
