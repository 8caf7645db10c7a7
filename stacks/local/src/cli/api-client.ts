/**
 * The slice of the public API the CLI needs, over fetch. It speaks only the documented HTTP API,
 * so it works the same against the local stack and a deployed one.
 */
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { Readable } from "node:stream";
import type { Job } from "@tcoder/worker/contract";

export interface Problem {
  status: number;
  code: string;
  title?: string;
  detail?: string;
}

export class ApiError extends Error {
  constructor(readonly problem: Problem) {
    super(`${problem.code}: ${problem.detail ?? problem.title ?? `HTTP ${problem.status}`}`);
  }
}

export interface UploadTicket {
  jobId: string;
  upload: { url: string; method: "PUT"; headers: Record<string, string>; expiresAt: string };
  job: Job;
}

export interface Stats {
  machines: Record<string, number>;
  maxMachines: number;
  queued: number;
  running: number;
  oldestQueuedAgeSeconds: number | null;
}

export function createApiClient({ baseUrl, token }: { baseUrl: string; token: string }) {
  const call = async <T>(method: string, path: string, body?: unknown): Promise<T> => {
    const response = await fetch(new URL(path, baseUrl), {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await response.text();
    const parsed: unknown = text ? JSON.parse(text) : undefined;
    if (!response.ok) {
      const problem = (parsed ?? {}) as Partial<Problem>;
      throw new ApiError({ ...problem, status: response.status, code: problem.code ?? `http_${response.status}` });
    }
    return parsed as T;
  };

  return {
    health: async () => (await fetch(new URL("/healthz", baseUrl))).ok,
    createUpload: (input: { filename: string; contentType: string; size: number; preset?: string }) =>
      call<UploadTicket>("POST", "/v1/uploads", input),
    getJob: (id: string) => call<Job>("GET", `/v1/jobs/${encodeURIComponent(id)}`),
    listJobs: (query: { state?: string; limit?: number; cursor?: string } = {}) => {
      const params = new URLSearchParams();
      for (const [name, value] of Object.entries(query)) if (value !== undefined) params.set(name, String(value));
      return call<{ jobs: Job[]; nextCursor: string | null }>("GET", `/v1/jobs?${params}`);
    },
    cancel: (id: string) => call<Job>("POST", `/v1/jobs/${encodeURIComponent(id)}/cancel`),
    stats: () => call<Stats>("GET", "/v1/stats"),
  };
}
export type ApiClient = ReturnType<typeof createApiClient>;

/** Streams a file to a presigned PUT with exactly the signed headers, reporting bytes sent. */
export async function putFile(
  ticket: UploadTicket["upload"],
  path: string,
  onBytes: (sent: number, total: number) => void,
): Promise<void> {
  const { size } = await stat(path);
  let sent = 0;
  const source = createReadStream(path);
  source.on("data", (chunk) => {
    sent += chunk.length;
    onBytes(sent, size);
  });
  const response = await fetch(ticket.url, {
    method: ticket.method,
    headers: ticket.headers,
    body: Readable.toWeb(source) as ReadableStream<Uint8Array>,
    duplex: "half",
  } as RequestInit);
  if (!response.ok) {
    throw new ApiError({
      status: response.status,
      code: "upload_failed",
      detail: (await response.text()).slice(0, 500),
    });
  }
}
