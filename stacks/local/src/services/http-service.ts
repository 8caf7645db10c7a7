/**
 * The request/response plumbing the local stand-ins share: listen on loopback, read a bounded
 * body, send a whole one, stop without waiting for idle keep-alive connections.
 */
import { createServer, type IncomingMessage, type RequestListener, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export interface LocalHttpService {
  /** `http://127.0.0.1:<port>` */
  url: string;
  port: number;
  /** Closes the listener and every open connection. */
  stop(): Promise<void>;
}

/** Serves `listener` on 127.0.0.1 (`port` 0 picks a free one). */
export async function serveLocal(listener: RequestListener, port = 0): Promise<LocalHttpService> {
  const server = createServer(listener);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve());
  });
  const bound = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${bound}`,
    port: bound,
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((done) => server.close(() => done()));
    },
  };
}

/**
 * The whole request body, or `tooLarge()` thrown as soon as it passes `limitBytes` (a declared
 * Content-Length over the limit is refused before a byte is read). What is left of the body is
 * drained so the error response still reaches the client.
 */
export async function readBody(req: IncomingMessage, limitBytes: number, tooLarge: () => Error): Promise<Buffer> {
  const refuse = () => {
    req.resume();
    return tooLarge();
  };
  if (Number(req.headers["content-length"] ?? 0) > limitBytes) throw refuse();
  const chunks: Buffer[] = [];
  let size = 0;
  // Leaving the loop early must not destroy the socket: the refusal still has to be written to it.
  for await (const chunk of req.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limitBytes) throw refuse();
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** Sends a whole body with its type and length (and any other headers). */
export function sendBody(
  res: ServerResponse,
  status: number,
  contentType: string,
  body: string | Buffer,
  headers: Record<string, string> = {},
) {
  res.writeHead(status, { ...headers, "content-type": contentType, "content-length": Buffer.byteLength(body) });
  res.end(body);
}
