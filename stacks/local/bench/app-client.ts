/**
 * The bench's app: a worker thread that uploads through the SDK, so the client's own work (reading
 * the file, HTTP) runs beside the local cloud instead of on the same event loop as its S3 store, as
 * an app's upload does beside R2. The main thread asks; the worker answers with the job and when
 * the upload began and ended.
 */
import { isMainThread, parentPort, Worker } from "node:worker_threads";
import { createClient, type UploadOptions } from "@tcoder/client/node";
import type { Job } from "@tcoder/worker/contract";

interface UploadRequest {
  baseUrl: string;
  token: string;
  path: string;
  options: UploadOptions;
}

type UploadAnswer = { ok: true; job: Job; startedAt: number; uploadedAt: number } | { ok: false; message: string };

export interface AppClient {
  upload(path: string, options: UploadOptions): Promise<{ job: Job; startedAt: number; uploadedAt: number }>;
  close(): Promise<void>;
}

export function startAppClient(baseUrl: string, token: string): AppClient {
  // A worker does not inherit the main thread's TypeScript loader: it registers tsx's, then loads this file.
  const worker = new Worker(
    `import("tsx/esm/api").then(({ register }) => { register(); return import(${JSON.stringify(import.meta.url)}); });`,
    { eval: true },
  );
  worker.unref();
  let queue = Promise.resolve();
  return {
    upload(path, options) {
      const answer = queue.then(
        () =>
          new Promise<UploadAnswer>((resolve, reject) => {
            worker.once("message", resolve);
            worker.once("error", reject);
            worker.postMessage({ baseUrl, token, path, options } satisfies UploadRequest);
          }),
      );
      queue = answer.then(
        () => {},
        () => {},
      );
      return answer.then((a) => {
        if (!a.ok) throw new Error(`bench upload failed: ${a.message}`);
        return a;
      });
    },
    async close() {
      await worker.terminate();
    },
  };
}

if (!isMainThread && parentPort) {
  const port = parentPort;
  port.on("message", async (request: UploadRequest) => {
    const api = createClient({ baseUrl: request.baseUrl, token: request.token });
    const startedAt = Date.now();
    try {
      const job = await api.upload(request.path, request.options);
      port.postMessage({ ok: true, job, startedAt, uploadedAt: Date.now() } satisfies UploadAnswer);
    } catch (error) {
      port.postMessage({ ok: false, message: (error as Error).message } satisfies UploadAnswer);
    }
  });
}
