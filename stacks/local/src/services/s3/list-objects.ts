/** ListObjectsV2 over the sorted keys of a bucket: prefix, delimiter, max-keys and continuation. */
import type { StoredObject } from "./disk-store.ts";

export interface ListRequest {
  prefix: string;
  delimiter: string;
  maxKeys: number;
  /** Return only keys after this one (from start-after or a continuation token). */
  after: string;
}

export interface ListPage {
  objects: StoredObject[];
  commonPrefixes: string[];
  /** The key or common prefix the page ended on when there is more; feeds the next token. */
  nextAfter: string | null;
}

export function listPage(sorted: StoredObject[], request: ListRequest): ListPage {
  const objects: StoredObject[] = [];
  const commonPrefixes: string[] = [];
  let last: string | null = null;
  for (const object of sorted) {
    if (!object.key.startsWith(request.prefix) || object.key <= request.after) continue;
    // A page that ended on a common prefix resumes after everything under it.
    if (request.delimiter && request.after.endsWith(request.delimiter) && object.key.startsWith(request.after))
      continue;
    const rest = object.key.slice(request.prefix.length);
    const cut = request.delimiter ? rest.indexOf(request.delimiter) : -1;
    const commonPrefix = cut >= 0 ? request.prefix + rest.slice(0, cut + request.delimiter.length) : null;
    if (commonPrefix !== null && commonPrefix === last) continue;
    if (objects.length + commonPrefixes.length >= request.maxKeys) return { objects, commonPrefixes, nextAfter: last };
    if (commonPrefix !== null) {
      commonPrefixes.push(commonPrefix);
      last = commonPrefix;
    } else {
      objects.push(object);
      last = object.key;
    }
  }
  return { objects, commonPrefixes, nextAfter: null };
}

export const encodeContinuationToken = (after: string) => Buffer.from(after, "utf8").toString("base64url");
export const decodeContinuationToken = (token: string) => Buffer.from(token, "base64url").toString("utf8");
