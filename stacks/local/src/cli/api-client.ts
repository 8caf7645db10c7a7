/**
 * The CLI talks to the API through the SDK (`@tcoder/client`), as any app does, so it works the
 * same against the local stack and a deployed one. What it adds is how a failure reads: a request
 * with no answer names its address and why (`fetchOrExplain`), an answer that is not tcoder's JSON
 * says so, and a refusal is one sentence with the API's code.
 */
import { createClient, type TcoderClient, TcoderError } from "@tcoder/client/node";
import { fetchOrExplain, UnreachableError } from "./unreachable.ts";

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

export type ApiClient = TcoderClient;

/**
 * The SDK's client, with a fetch that words what went wrong: no answer from the API or the store
 * is an UnreachableError; an API answer that is not JSON, or that refuses the token, an ApiError.
 * The SDK reports either as a `network` TcoderError caused by it; `explainFailure` takes it out.
 */
export function createApiClient({ baseUrl, token }: { baseUrl: string; token: string }): ApiClient {
  const apiOrigin = new URL(baseUrl).origin;
  const explainingFetch: typeof fetch = async (input, init) => {
    const url = new URL(input instanceof Request ? input.url : input);
    const toApi = url.origin === apiOrigin;
    const response = await fetchOrExplain(url, init, toApi ? "the API" : "the upload URL");
    if (!toApi) return response;
    const body = await jsonOrRefuse(response, init?.method ?? "GET", url);
    if (response.status === 401) {
      const problem = { ...(body as Partial<Problem> | undefined), status: 401 };
      const code = problem.code ?? "http_401";
      throw new ApiError(
        { ...problem, code },
        `the API at ${apiOrigin} refused the token (401 ${code}): pass its token with --token or TCODER_API_TOKEN`,
      );
    }
    return response;
  };
  return createClient({ baseUrl, token, fetch: explainingFetch });
}

/** The API's JSON; a proxy, a web page or another service answered: say so rather than print a JSON parse error. */
async function jsonOrRefuse(response: Response, method: string, url: URL): Promise<unknown> {
  const text = await response.clone().text();
  try {
    return text ? (JSON.parse(text) as unknown) : undefined;
  } catch {
    const type = response.headers.get("content-type") ?? "no content type";
    throw new ApiError(
      { status: response.status, code: "unexpected_response" },
      `${url.origin} answered ${method} ${url.pathname}${url.search} with HTTP ${response.status} and ${type}, not tcoder's JSON: is it a tcoder API?`,
    );
  }
}

/**
 * The failure as a person should read it: an ApiError or UnreachableError for what the API, the
 * store or the network did, the error itself for anything else.
 */
export function explainFailure(error: unknown): unknown {
  for (let cause = error; cause instanceof Error; cause = cause.cause) {
    if (cause instanceof UnreachableError || cause instanceof ApiError) return cause;
    if (!(cause instanceof TcoderError) || cause.code === "network") continue;
    const problem = { ...cause.problem, status: cause.status ?? 0 };
    if (!cause.problem) return new ApiError({ ...problem, code: cause.code }, `${cause.code}: ${cause.message}`);
    return new ApiError({ ...problem, code: problem.code ?? `http_${problem.status}` });
  }
  return error;
}
