import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  crons,
  defaultVars,
  queueProducers,
  queues,
  type SecretName,
  secrets,
  stackQueueName,
  uploadNotification,
  type VarName,
  vars,
} from "@tcoder/worker/bindings";
import { beforeAll, describe, expect, test } from "vitest";
import { configKeyOf, defaultFlyAppName } from "../src/config.ts";
import { imageSourceHash, imageSourcePaths } from "../src/image-source.ts";
import { sha256Hex } from "../src/storage.ts";
import { type ProgramRun, type RegisteredResource, repoRoot, runProgram, SECRET } from "./mock-program.ts";

const T = {
  bucket: "cloudflare:index/r2Bucket:R2Bucket",
  cors: "cloudflare:index/r2BucketCors:R2BucketCors",
  lifecycle: "cloudflare:index/r2BucketLifecycle:R2BucketLifecycle",
  managedDomain: "cloudflare:index/r2ManagedDomain:R2ManagedDomain",
  customDomain: "cloudflare:index/r2CustomDomain:R2CustomDomain",
  token: "cloudflare:index/accountToken:AccountToken",
  queue: "cloudflare:index/queue:Queue",
  consumer: "cloudflare:index/queueConsumer:QueueConsumer",
  notification: "cloudflare:index/r2BucketEventNotification:R2BucketEventNotification",
  script: "cloudflare:index/workersScript:WorkersScript",
  cron: "cloudflare:index/workersCronTrigger:WorkersCronTrigger",
  workersDomain: "cloudflare:index/workersCustomDomain:WorkersCustomDomain",
  workersDev: "cloudflare:index/workersScriptSubdomain:WorkersScriptSubdomain",
  redis: "upstash:index/redisDatabase:RedisDatabase",
  flyApp: "pulumi-nodejs:dynamic/fly:App",
  image: "command:local:Command",
} as const;

interface Binding {
  type: string;
  name: string;
  text?: string;
  queueName?: string;
}

function bindingsOf(script: RegisteredResource, view: "inputs" | "rawInputs" = "inputs"): Map<string, Binding> {
  const list = script[view].bindings as unknown as Binding[];
  return new Map(list.map((b) => [b.name, b]));
}

describe("dev stack under mocks (config from Pulumi.dev.yaml)", () => {
  const flyApp = defaultFlyAppName("tcoder-dev", "0123456789abcdef0123456789abcdef");
  let run: ProgramRun;
  beforeAll(async () => {
    run = await runProgram("dev");
  });

  test("every cloud resource is a child of one of the five components", () => {
    const parentOf = (type: string, name?: string) => {
      const parent = run.parentOf(run.one(type, name));
      return parent && `${parent.type} ${parent.name}`;
    };
    expect(parentOf(T.bucket, "storage-inputs")).toBe("tcoder:index:Storage storage");
    expect(parentOf(T.bucket, "storage-outputs")).toBe("tcoder:index:Storage storage");
    expect(parentOf(T.token)).toBe("tcoder:index:Storage storage");
    expect(parentOf(T.managedDomain)).toBe("tcoder:index:Storage storage");
    expect(parentOf(T.notification)).toBe("tcoder:index:Events events");
    expect(parentOf(T.redis)).toBe("tcoder:index:State state");
    expect(parentOf(T.flyApp)).toBe("tcoder:index:Compute compute");
    expect(parentOf(T.image)).toBe("tcoder:index:Compute compute");
    expect(parentOf(T.script)).toBe("tcoder:index:ControlPlane control-plane");
    expect(parentOf(T.cron)).toBe("tcoder:index:ControlPlane control-plane");
    const orphans = run.resources.filter((r) => r.custom && !r.type.startsWith("pulumi:") && !run.parentOf(r));
    expect(orphans.map((r) => r.name)).toEqual([]);
    expect(run.byType(T.customDomain)).toEqual([]);
    expect(run.byType(T.workersDomain)).toEqual([]);
  });

  test("every var is a plain_text binding and every secret a secret_text binding holding a Pulumi secret", () => {
    const bindings = bindingsOf(run.one(T.script));
    for (const name of Object.keys(vars) as VarName[]) {
      expect(bindings.get(name)?.type, name).toBe("plain_text");
      expect(bindings.get(name)?.text, name).not.toBe(SECRET);
    }
    for (const name of Object.keys(secrets) as SecretName[]) {
      expect(bindings.get(name), name).toEqual({ type: "secret_text", name, text: SECRET });
    }
    const queueNames = new Set(run.byType(T.queue).map((q) => q.inputs.queueName));
    for (const [name, queueName] of Object.entries(queueProducers)) {
      const stackName = stackQueueName("tcoder-dev", queueName);
      expect(bindings.get(name), name).toEqual({ type: "queue", name, queueName: stackName });
      expect(queueNames.has(stackName), `${name} names a queue this stack creates`).toBe(true);
    }
    expect(bindings.size).toBe(
      Object.keys(vars).length + Object.keys(secrets).length + Object.keys(queueProducers).length,
    );
  });

  test("no secret value reaches a plain-text binding", () => {
    const raw = [...bindingsOf(run.one(T.script), "rawInputs").values()];
    const plainTexts = raw.filter((b) => b.type === "plain_text").map((b) => String(b.text));
    const secretValues = [
      ...Object.values(run.secretConfig),
      "mock-r2-token-value",
      sha256Hex("mock-r2-token-value"),
      "mock-upstash-rest-token",
    ];
    for (const secret of secretValues) {
      expect(plainTexts.filter((text) => text.includes(secret))).toEqual([]);
    }
  });

  test("secrets from stack config reach their secret bindings unchanged", () => {
    const raw = bindingsOf(run.one(T.script), "rawInputs");
    expect(raw.get("API_TOKEN")?.text).toBe(run.secretConfig["tcoder:apiToken"]);
    expect(raw.get("FLY_API_TOKEN")?.text).toBe(run.secretConfig["tcoder:flyApiToken"]);
  });

  test("S3 credentials are the R2 token's id and the SHA-256 of its value, as Cloudflare documents", () => {
    const raw = bindingsOf(run.one(T.script), "rawInputs");
    expect(raw.get("S3_ACCESS_KEY_ID")?.text).toBe("storage-s3-token-id");
    expect(raw.get("S3_SECRET_ACCESS_KEY")?.text).toBe(sha256Hex("mock-r2-token-value"));
    const policy = (run.one(T.token).inputs.policies as { resources: string }[])[0];
    expect(Object.keys(JSON.parse(policy?.resources ?? "{}")).sort()).toEqual([
      "com.cloudflare.edge.r2.bucket.0123456789abcdef0123456789abcdef_default_tcoder-dev-inputs",
      "com.cloudflare.edge.r2.bucket.0123456789abcdef0123456789abcdef_default_tcoder-dev-outputs",
    ]);
  });

  test("stack config overrides defaultVars and every other tunable keeps its default", () => {
    const bindings = bindingsOf(run.one(T.script));
    for (const name of Object.keys(defaultVars) as (keyof typeof defaultVars)[]) {
      const configured = run.config[`tcoder:${configKeyOf(name)}`];
      expect(bindings.get(name)?.text, name).toBe(configured ?? defaultVars[name]);
    }
    expect(bindings.get("MAX_MACHINES")?.text).toBe("2");
  });

  test("the R2 notification sends object-created events under inputs/ of the input bucket to the uploads queue", () => {
    const notification = run.one(T.notification).inputs;
    expect(notification.bucketName).toBe("tcoder-dev-inputs");
    expect(notification.queueId).toBe(`${stackQueueName("tcoder-dev", uploadNotification.queue)}-id`);
    expect(notification.rules).toEqual([
      expect.objectContaining({ prefix: uploadNotification.prefix, actions: [...uploadNotification.actions] }),
    ]);
    expect(uploadNotification.prefix).toBe("inputs/");
  });

  test("every declared queue has a dead-letter queue and a worker consumer with its settings", () => {
    const queueNames = run.byType(T.queue).map((q) => q.inputs.queueName);
    for (const [key, declared] of Object.entries(queues)) {
      const name = `tcoder-dev-${key}`;
      expect(stackQueueName("tcoder-dev", declared.name)).toBe(name);
      expect(queueNames).toContain(name);
      expect(queueNames).toContain(`${name}-dlq`);
      expect(run.one(T.consumer, `control-plane-${key}-consumer`).inputs).toEqual({
        accountId: "0123456789abcdef0123456789abcdef",
        queueId: `${name}-id`,
        scriptName: "tcoder-dev-api",
        type: "worker",
        deadLetterQueue: `${name}-dlq`,
        settings: {
          batchSize: declared.maxBatchSize,
          maxRetries: declared.maxRetries,
          maxWaitTimeMs: declared.maxBatchTimeoutSeconds * 1000,
        },
      });
    }
  });

  test("the worker script waits for every queue, since its producer bindings name them", () => {
    const script = run.one(T.script);
    for (const queue of run.byType(T.queue)) {
      expect(script.dependencies, String(queue.inputs.queueName)).toContain(queue.urn);
    }
  });

  test("the worker runs the declared crons, compatibility date and flags", () => {
    expect(run.one(T.cron).inputs.schedules).toEqual(crons.map((cron) => ({ cron })));
    const script = run.one(T.script).inputs;
    expect(script.compatibilityDate).toBe("2025-04-01");
    expect(script.compatibilityFlags).toEqual(["nodejs_compat"]);
    expect(script.mainModule).toBe("worker.js");
    expect(String(script.contentSha256)).toMatch(/^[0-9a-f]{64}$/);
  });

  test("buckets: location hint, CORS for browser PUT and player GET, multipart abort and input expiry", () => {
    expect(run.one(T.bucket, "storage-inputs").inputs).toMatchObject({ name: "tcoder-dev-inputs", location: "enam" });
    const inputCors = run.one(T.cors, "storage-inputs-cors").inputs.rules as { allowed: unknown }[];
    expect(inputCors[0]?.allowed).toMatchObject({ methods: ["PUT"], origins: ["http://localhost:5173"] });
    const outputCors = run.one(T.cors, "storage-outputs-cors").inputs.rules as { allowed: unknown }[];
    expect(outputCors[0]?.allowed).toMatchObject({ methods: ["GET", "HEAD"] });
    const inputRules = run.one(T.lifecycle, "storage-inputs-lifecycle").inputs.rules;
    expect(inputRules).toEqual([
      expect.objectContaining({ id: "abort-incomplete-uploads", abortMultipartUploadsTransition: expect.anything() }),
      expect.objectContaining({
        id: "expire-sources",
        conditions: { prefix: "inputs/" },
        deleteObjectsTransition: { condition: { type: "Age", maxAge: 7 * 86_400 } },
      }),
    ]);
    // Only the output bucket gets a public domain.
    expect(run.one(T.managedDomain).inputs.bucketName).toBe("tcoder-dev-outputs");
  });

  test("Redis is a TLS Upstash database in the configured region", () => {
    expect(run.one(T.redis).inputs).toMatchObject({
      databaseName: "tcoder-dev-state",
      tls: true,
      region: "global",
      primaryRegion: "us-east-1",
      eviction: false,
    });
  });

  test("the image is built from a source hash and tagged in the Fly app's registry; its token stays secret", () => {
    const image = run.one(T.image).inputs;
    expect(image.environment).toMatchObject({
      IMAGE: expect.stringMatching(new RegExp(`^registry\\.fly\\.io/${flyApp}:[0-9a-f]{16}$`)),
      FLY_API_TOKEN: SECRET,
    });
    expect(image.triggers).toEqual([expect.stringMatching(/^[0-9a-f]{64}$/), flyApp]);
    expect(run.one(T.flyApp).inputs).toMatchObject({
      name: flyApp,
      orgSlug: "personal",
      apiToken: SECRET,
    });
  });

  test("no input names this checkout's path, so a clone elsewhere neither rebuilds the image nor re-uploads the worker", () => {
    for (const resource of run.resources) {
      expect(JSON.stringify(resource.rawInputs), `${resource.type} ${resource.name}`).not.toContain(repoRoot);
    }
    expect(run.one(T.script).inputs.contentFile).toBe("infra/dist/worker/worker.js");
  });

  test("stack outputs a client needs; the API token and Redis URL are secret", () => {
    const o = run.outputs;
    expect(o.apiUrl).toEqual({ value: "https://tcoder-dev-api.tcoder-example.workers.dev", secret: false });
    expect(o.inputBucket).toEqual({ value: "tcoder-dev-inputs", secret: false });
    expect(o.outputBucket).toEqual({ value: "tcoder-dev-outputs", secret: false });
    expect(o.uploadsQueue).toEqual({ value: "tcoder-dev-uploads", secret: false });
    expect(o.flyApp).toEqual({ value: flyApp, secret: false });
    // The command provider returns the build's stdout as a secret (the mock does too); a digest is
    // not one, and MACHINE_IMAGE is a plain-text binding.
    expect(o.imageDigest).toEqual({ value: expect.stringMatching(/^sha256:[0-9a-f]{64}$/), secret: false });
    expect(o.machineImage).toEqual({
      value: `registry.fly.io/${flyApp}@${String(o.imageDigest?.value)}`,
      secret: false,
    });
    expect(bindingsOf(run.one(T.script), "inputs").get("MACHINE_IMAGE")?.text).toBe(o.machineImage?.value);
    expect(o.apiToken).toEqual({ value: run.secretConfig["tcoder:apiToken"], secret: true });
    expect(o.redisRestUrl?.secret).toBe(true);
    expect(o.s3AccessKeyId).toEqual({ value: "storage-s3-token-id", secret: true });
    expect(o.s3SecretAccessKey).toEqual({ value: sha256Hex("mock-r2-token-value"), secret: true });
  });
});

describe("two stacks in one Cloudflare account", () => {
  test("share no account-scoped name (buckets, queues, worker, token), and adopters get different Fly apps", async () => {
    const accountScoped = (run: ProgramRun) =>
      [
        ...run.byType(T.bucket).map((r) => r.inputs.name),
        ...run.byType(T.queue).map((r) => r.inputs.queueName),
        ...run.byType(T.script).map((r) => r.inputs.scriptName),
        ...run.byType(T.token).map((r) => r.rawInputs.name),
        ...run.byType(T.flyApp).map((r) => r.inputs.name),
      ].map(String);
    const dev = await runProgram("dev");
    const staging = await runProgram("dev", { "tcoder:namePrefix": "tcoder-staging" });
    const devNames = accountScoped(dev);
    expect(devNames).toHaveLength(new Set(devNames).size);
    expect(accountScoped(staging).filter((name) => devNames.includes(name))).toEqual([]);

    const otherAdopter = await runProgram("dev", { "tcoder:cloudflareAccountId": "f".repeat(32) });
    expect(otherAdopter.one(T.flyApp).inputs.name).not.toBe(dev.one(T.flyApp).inputs.name);
  });
});

describe("prod stack under mocks (config from Pulumi.prod.yaml)", () => {
  test("custom domains replace r2.dev and workers.dev, and the API URL follows", async () => {
    const run = await runProgram("prod");
    expect(run.byType(T.managedDomain)).toEqual([]);
    expect(run.byType(T.workersDev)).toEqual([]);
    expect(run.one(T.customDomain).inputs).toMatchObject({
      bucketName: "tcoder-prod-outputs",
      domain: "media.example.com",
      enabled: true,
    });
    expect(run.one(T.workersDomain).inputs).toMatchObject({
      hostname: "api.media.example.com",
      service: "tcoder-prod-api",
    });
    expect(run.outputs.apiUrl?.value).toBe("https://api.media.example.com");
    const bindings = bindingsOf(run.one(T.script));
    expect(bindings.get("OUTPUTS_BASE_URL")?.text).toBe("https://media.example.com");
    expect(bindings.get("CONTROL_PLANE_URL")?.text).toBe("https://api.media.example.com");
    expect(bindings.get("MAX_MACHINES")?.text).toBe("8");
  });
});

describe("stack config is checked before anything is planned", () => {
  test("a tunable outside the binding module's schema names its config key", async () => {
    await expect(runProgram("dev", { "tcoder:maxMachines": "0" })).rejects.toThrow(
      /tcoder:maxMachines \(MAX_MACHINES\)/,
    );
  });

  test("a missing secret names the config key to set", async () => {
    await expect(runProgram("dev", { "tcoder:callbackSigningSecret": undefined })).rejects.toThrow(
      /tcoder:callbackSigningSecret/,
    );
  });

  test("without apiDomain or workersSubdomain the program says which to set", async () => {
    await expect(runProgram("dev", { "tcoder:workersSubdomain": undefined })).rejects.toThrow(
      /tcoder:workersSubdomain/,
    );
  });
});

describe("machine image source hash", () => {
  test("covers every path the Dockerfile copies, and changes when one of them does", () => {
    const dockerfile = readFileSync(`${repoRoot}/machine-image/Dockerfile`, "utf8");
    const copied = [...dockerfile.matchAll(/^COPY (?!--from)(.+) \S+$/gm)].flatMap((m) => (m[1] ?? "").split(/\s+/));
    for (const path of copied) {
      expect(
        imageSourcePaths.some((p) => path === p || path.startsWith(`${p}/`)),
        `${path} is copied into the image but not hashed`,
      ).toBe(true);
    }
    expect(imageSourceHash(repoRoot)).not.toBe(imageSourceHash(repoRoot, imageSourcePaths.slice(1)));
  });
});

describe("worker bundle", () => {
  test("TCODER_WORKER_BUNDLE deploys a prebuilt bundle, identified by its sha256", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tcoder-bundle-"));
    const path = join(dir, "worker.js");
    writeFileSync(path, "export default { fetch() { return new Response('prebuilt'); } };\n");
    process.env.TCODER_WORKER_BUNDLE = path;
    try {
      const script = (await runProgram("dev")).one(T.script).inputs;
      expect(script.contentFile).toBe(path);
      expect(script.contentSha256).toBe(sha256Hex(readFileSync(path)));
    } finally {
      delete process.env.TCODER_WORKER_BUNDLE;
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
