/**
 * One transcode pipeline for tests: a local S3 store with an input and an output bucket, and
 * `transcode()` that uploads a source, runs one attempt on real ffmpeg and downloads what was
 * published, so assertions read the package exactly as players would.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PutObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { startS3Store } from "@tcoder/local/services/s3-store";
import { type LoudnessSetting, type Preset, presets } from "@tcoder/worker/contract";
import { outputPrefix } from "../../src/package/layout.ts";
import { createS3Client } from "../../src/storage/s3.ts";
import { type TranscodeOutcome, transcodeJob } from "../../src/transcode.ts";
import { downloadPrefix } from "./outputs.ts";

const credentials = { accessKeyId: "test-key", secretAccessKey: "test-secret" };
export const INPUTS = "inputs";
export const OUTPUTS = "outputs";

export interface Run {
  jobId: string;
  outcome: TranscodeOutcome;
  /** Local copy of everything published under outputs/<jobId>/. */
  local: (key: string) => string;
  keys: string[];
}

export interface RunOptions {
  preset?: Preset;
  limits?: { maxDurationSeconds: number; maxPixels: number };
  jobId?: string;
  attempt?: number;
  confirmLease?: () => Promise<boolean>;
  loudness?: LoudnessSetting;
}

export interface Pipeline {
  /** Scratch directory for clips; removed by `stop()`. */
  dir: string;
  s3: S3Client;
  transcode(source: string | null, options?: RunOptions): Promise<Run>;
  stop(): Promise<void>;
}

export async function startPipeline(): Promise<Pipeline> {
  const dir = await mkdtemp(join(tmpdir(), "tcoder-transcode-"));
  const store = await startS3Store({ dir: join(dir, "store"), credentials, buckets: [INPUTS, OUTPUTS] });
  const s3 = createS3Client({ endpoint: store.endpoint, region: "auto", ...credentials });
  let jobCounter = 0;

  async function transcode(source: string | null, options: RunOptions = {}): Promise<Run> {
    const {
      preset = presets["hls-ladder"],
      limits = { maxDurationSeconds: 4 * 3600, maxPixels: 4096 * 2304 },
      jobId = `job${++jobCounter}`,
      attempt = 1,
      confirmLease,
      loudness,
    } = options;
    const inputKey = `inputs/${jobId}/source`;
    if (source) await s3.send(new PutObjectCommand({ Bucket: INPUTS, Key: inputKey, Body: await readFile(source) }));
    const outcome = await transcodeJob(
      { jobId, attempt, preset, inputKey, ...(loudness ? { loudness } : {}) },
      {
        s3,
        inputBucket: INPUTS,
        outputBucket: OUTPUTS,
        workDir: join(dir, "work"),
        limits,
        x264Preset: "ultrafast",
        uploadConcurrency: 4,
        ...(confirmLease ? { confirmLease } : {}),
      },
    );
    const downloaded = join(dir, "published", `${jobId}-${attempt}`);
    const keys = await downloadPrefix(s3, OUTPUTS, outputPrefix(jobId), downloaded);
    return { jobId, outcome, keys, local: (key) => join(downloaded, key) };
  }

  return {
    dir,
    s3,
    transcode,
    async stop() {
      s3.destroy();
      await store.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export function completed(run: Run) {
  if (run.outcome.kind !== "completed") throw new Error(`expected completed, got ${JSON.stringify(run.outcome)}`);
  return run.outcome;
}
