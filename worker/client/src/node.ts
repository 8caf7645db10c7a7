/**
 * `@tcoder/client/node`: the client plus file paths as upload sources (`upload("./clip.mp4")`).
 * The file is read lazily through `fs.openAsBlob`, so a multipart upload reads only the parts it
 * sends and a 5 GB source never sits in memory.
 */
import { openAsBlob } from "node:fs";
import { stat } from "node:fs/promises";
import { basename } from "node:path";
import { type ClientOptions, createClient as createBrowserSafeClient, guessContentType } from "./client.ts";
import { TcoderError } from "./errors.ts";

export * from "./index.ts";

export async function fileSource(path: string): Promise<{ blob: Blob; name: string }> {
  const info = await stat(path).catch((err: unknown) => {
    throw new TcoderError("invalid_source", `cannot read ${path}: ${err instanceof Error ? err.message : err}`);
  });
  if (!info.isFile()) throw new TcoderError("invalid_source", `${path} is not a file`);
  const name = basename(path);
  const type = guessContentType(name);
  return { blob: await openAsBlob(path, type ? { type } : {}), name };
}

/** Node's fetch streams a request body, so uploads report progress as the bytes go. */
export const createClient = (options: ClientOptions) =>
  createBrowserSafeClient({ ...options, resolveSource: fileSource, streamBody: true });
