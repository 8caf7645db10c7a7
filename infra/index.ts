/**
 * tcoder in the cloud: R2 buckets and queues, Upstash Redis, the Fly app and FFmpeg image, and the
 * worker that ties them together. Every binding comes from `worker/src/bindings.ts`.
 */
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as pulumi from "@pulumi/pulumi";
import { uploadNotification } from "@tcoder/worker/bindings";
import { Compute } from "./src/compute.ts";
import { loadStackConfig } from "./src/config.ts";
import { ControlPlane, workerBundle } from "./src/control-plane.ts";
import { Events } from "./src/events.ts";
import { imageSourceHash } from "./src/image-source.ts";
import { State } from "./src/state.ts";
import { Storage } from "./src/storage.ts";

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), "..");

const config = loadStackConfig();
const accountId = config.cloudflareAccountId;
const prefix = config.namePrefix;

const storage = new Storage("storage", {
  accountId,
  inputBucketName: `${prefix}-inputs`,
  outputBucketName: `${prefix}-outputs`,
  location: config.r2Location,
  corsOrigins: config.corsOrigins,
  inputExpiryDays: config.inputExpiryDays,
  abortMultipartAfterDays: config.abortMultipartAfterDays,
  outputsDomain: config.outputsDomain,
});

const buckets = { INPUT_BUCKET: storage.inputBucket.name, OUTPUT_BUCKET: storage.outputBucket.name };

const events = new Events("events", {
  accountId,
  namePrefix: prefix,
  notificationBucketName: buckets[uploadNotification.bucketVar],
});

const state = new State("state", {
  databaseName: `${prefix}-state`,
  primaryRegion: config.upstashPrimaryRegion,
});

const compute = new Compute("compute", {
  appName: config.flyAppName,
  orgSlug: config.flyOrg,
  flyApiBaseUrl: config.flyApiBaseUrl,
  flyApiToken: config.secrets.FLY_API_TOKEN,
  dockerfile: "machine-image/Dockerfile",
  sourceHash: imageSourceHash(repoRoot),
});

const controlPlane = new ControlPlane("control-plane", {
  accountId,
  scriptName: `${prefix}-api`,
  bundle: workerBundle(repoRoot),
  projectDir: repoRoot,
  vars: {
    ...config.tunables,
    ...buckets,
    S3_ENDPOINT: storage.s3Endpoint,
    OUTPUTS_BASE_URL: storage.outputsBaseUrl,
    // An address, not a credential: the binding module declares it a var, and a plain-text
    // binding must never carry a Pulumi secret (the token is the secret).
    UPSTASH_REDIS_REST_URL: pulumi.unsecret(state.restUrl),
    FLY_API_BASE_URL: config.flyApiBaseUrl,
    FLY_APP_NAME: compute.appName,
    MACHINE_IMAGE: compute.imageRef,
  },
  secrets: {
    ...config.secrets,
    UPSTASH_REDIS_REST_TOKEN: state.restToken,
    S3_ACCESS_KEY_ID: storage.accessKeyId,
    S3_SECRET_ACCESS_KEY: storage.secretAccessKey,
  },
  queues: events.queues,
  namePrefix: prefix,
  apiDomain: config.apiDomain,
  workersSubdomain: config.workersSubdomain,
});

/** Where clients send requests (`Authorization: Bearer <apiToken>`). */
export const apiUrl = controlPlane.apiUrl;
export const apiToken = config.secrets.API_TOKEN;
export const inputBucket = storage.inputBucket.name;
export const outputBucket = storage.outputBucket.name;
export const outputsBaseUrl = storage.outputsBaseUrl;
export const s3Endpoint = storage.s3Endpoint;
/** The R2 token's S3 credentials (secret): for emptying the buckets before `pulumi destroy`. */
export const s3AccessKeyId = storage.accessKeyId;
export const s3SecretAccessKey = storage.secretAccessKey;
export const uploadsQueue = events.queues.uploads.queue.queueName;
export const queueNames = pulumi.output(
  Object.fromEntries(Object.entries(events.queues).map(([key, pair]) => [key, pair.queue.queueName])),
);
export const flyApp = compute.appName;
export const machineImage = compute.imageRef;
export const imageDigest = compute.imageDigest;
export const workerScript = controlPlane.script.scriptName;
export const redisRestUrl = state.restUrl;
export const stack = pulumi.getStack();
