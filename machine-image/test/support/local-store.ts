/** A local S3 store (stacks/local) with one client for a test file: started before, removed after. */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { S3Client } from "@aws-sdk/client-s3";
import { type S3Store, startS3Store } from "@tcoder/local/services/s3-store";
import { afterAll, beforeAll } from "vitest";
import { createS3Client } from "../../src/storage/s3.ts";

export const storeCredentials = { accessKeyId: "test-key", secretAccessKey: "test-secret" };

export interface LocalStore {
  /** A scratch directory of the test file (the store keeps its objects below it). */
  dir: string;
  store: S3Store;
  s3: S3Client;
  /** Another client of the same store (to add middleware to). */
  client(): S3Client;
}

export function useLocalStore(name: string, buckets: string[]): LocalStore {
  const local = {
    client: () => createS3Client({ endpoint: local.store.endpoint, region: "auto", ...storeCredentials }),
  } as LocalStore;
  beforeAll(async () => {
    local.dir = await mkdtemp(join(tmpdir(), `tcoder-${name}-`));
    local.store = await startS3Store({ dir: join(local.dir, "store"), credentials: storeCredentials, buckets });
    local.s3 = local.client();
  });
  afterAll(async () => {
    local.s3?.destroy();
    await local.store?.stop();
    if (local.dir) await rm(local.dir, { recursive: true, force: true });
  });
  return local;
}
