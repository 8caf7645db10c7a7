/**
 * tcoder's guardrails, enforced on every `pulumi preview`/`up` with `--policy-pack infra/policy`.
 * The pack itself is constructed in `index.ts` only: `new PolicyPack` starts a gRPC server, so the
 * rules live here where tests can call them directly.
 */
import type {
  Policies,
  PolicyResource,
  ReportViolation,
  ResourceValidationArgs,
  ResourceValidationPolicy,
  StackValidationArgs,
  StackValidationPolicy,
} from "@pulumi/policy";
import { crons, secrets, type VarName } from "@tcoder/worker/bindings";
import { machineSizeProblem } from "@tcoder/worker/fly/platform";

export const types = {
  bucket: "cloudflare:index/r2Bucket:R2Bucket",
  managedDomain: "cloudflare:index/r2ManagedDomain:R2ManagedDomain",
  customDomain: "cloudflare:index/r2CustomDomain:R2CustomDomain",
  queue: "cloudflare:index/queue:Queue",
  consumer: "cloudflare:index/queueConsumer:QueueConsumer",
  script: "cloudflare:index/workersScript:WorkersScript",
  cron: "cloudflare:index/workersCronTrigger:WorkersCronTrigger",
  redis: "upstash:index/redisDatabase:RedisDatabase",
  flyApp: "pulumi-nodejs:dynamic/fly:App",
} as const;

/** Bounds and allow-lists; each is policy config an organization can override per stack. */
export const defaultPolicyConfig = {
  publicBuckets: ["-outputs$"],
  maxMachines: 10,
  maxCpus: 8,
  maxMemoryMb: 16_384,
  cpuKinds: ["shared", "performance"],
  flyRegions: ["iad", "ord", "dfw", "sjc", "lax", "sea", "yyz", "ams", "fra", "lhr", "cdg", "arn"],
  r2Locations: ["enam", "wnam", "weur", "eeur"],
  upstashRegions: ["us-east-1", "us-west-1", "us-west-2", "eu-west-1", "eu-central-1"],
  namePattern: "^tcoder(-[a-z0-9]+)+$",
  requiredStackTags: ["environment", "owner"],
};
export type PolicyConfig = typeof defaultPolicyConfig;

function configOf(args: { getConfig<T extends object>(): T }): PolicyConfig {
  return { ...defaultPolicyConfig, ...args.getConfig<Partial<PolicyConfig>>() };
}

const stringArray = { type: "array", items: { type: "string" } } as const;

interface Binding {
  type?: string;
  name?: string;
  text?: unknown;
}

function bindingsOf(props: Record<string, unknown>): Binding[] {
  return Array.isArray(props.bindings) ? (props.bindings as Binding[]) : [];
}

/** A plain-text binding's value by name (names typed against the binding module). */
function plainText(props: Record<string, unknown>, name: VarName): string | undefined {
  const binding = bindingsOf(props).find((b) => b.name === name && b.type === "plain_text");
  return typeof binding?.text === "string" ? binding.text : undefined;
}

const secretNames = new Set<string>(Object.keys(secrets));
const secretLooking = /(TOKEN|SECRET|PASSWORD|PASSPHRASE|PRIVATE_KEY|ACCESS_KEY|API_KEY)/i;

export const noSecretInPlainTextBinding: ResourceValidationPolicy = {
  name: "no-secret-in-plain-text-binding",
  description: "Worker secrets are bound as secret_text, never plain_text (plain text shows in diffs and dashboards).",
  enforcementLevel: "mandatory",
  validateResource(args, reportViolation) {
    if (args.type !== types.script) return;
    for (const binding of bindingsOf(args.props)) {
      if (binding.type !== "plain_text" || !binding.name) continue;
      if (secretNames.has(binding.name) || secretLooking.test(binding.name)) {
        reportViolation(`binding ${binding.name} holds a secret but is plain_text; bind it as secret_text`);
      }
    }
  },
};

export const bucketsNotPublicUnlessConfigured: ResourceValidationPolicy = {
  name: "buckets-not-public-unless-configured",
  description:
    "Only buckets named in the policy config's publicBuckets patterns get a public (r2.dev or custom) domain.",
  enforcementLevel: "mandatory",
  configSchema: { properties: { publicBuckets: { ...stringArray, default: defaultPolicyConfig.publicBuckets } } },
  validateResource(args, reportViolation) {
    if (args.type !== types.managedDomain && args.type !== types.customDomain) return;
    if (args.props.enabled === false) return;
    const bucket = String(args.props.bucketName ?? "");
    const { publicBuckets } = configOf(args);
    if (!publicBuckets.some((pattern) => new RegExp(pattern).test(bucket))) {
      reportViolation(`bucket ${bucket} would be publicly readable; add it to publicBuckets if that is intended`);
    }
  },
};

function dependsOn(resource: PolicyResource, property: string, target: PolicyResource): boolean {
  return (resource.propertyDependencies?.[property] ?? []).some((dep) => dep.urn === target.urn);
}

export const queueHasDeadLetterQueue: StackValidationPolicy = {
  name: "queue-has-dead-letter-queue",
  description:
    "Every queue that is not itself a dead-letter queue has a consumer that dead-letters to a declared queue.",
  enforcementLevel: "mandatory",
  validateStack(args, reportViolation) {
    const queues = args.resources.filter((r) => r.type === types.queue);
    const consumers = args.resources.filter((r) => r.type === types.consumer);
    const queueNames = new Set(queues.map((q) => String(q.props.queueName)));
    const deadLetterNames = new Set(
      consumers
        .map((c) => c.props.deadLetterQueue)
        .filter(Boolean)
        .map(String),
    );
    for (const queue of queues) {
      const name = String(queue.props.queueName);
      if (deadLetterNames.has(name)) continue;
      const consumer = consumers.find(
        (c) =>
          dependsOn(c, "queueId", queue) ||
          (queue.props.queueId !== undefined && c.props.queueId === queue.props.queueId),
      );
      const dlq = consumer?.props.deadLetterQueue;
      if (!consumer) reportViolation(`queue ${name} has no consumer (and so no dead-letter queue)`, queue.urn);
      else if (!dlq) reportViolation(`queue ${name}'s consumer has no deadLetterQueue`, consumer.urn);
      else if (dlq === name || !queueNames.has(String(dlq))) {
        reportViolation(
          `queue ${name} dead-letters to ${String(dlq)}, which is not another queue of this stack`,
          consumer.urn,
        );
      }
    }
  },
};

export const workerHasCron: StackValidationPolicy = {
  name: "worker-has-cron",
  description: "The worker has the cron triggers the binding module declares (idle stop, lease recovery, expiry).",
  enforcementLevel: "mandatory",
  validateStack(args, reportViolation) {
    const triggers = args.resources.filter((r) => r.type === types.cron);
    for (const script of args.resources.filter((r) => r.type === types.script)) {
      const scheduled = triggers
        .filter((t) => dependsOn(t, "scriptName", script) || t.props.scriptName === script.props.scriptName)
        .flatMap((t) => (Array.isArray(t.props.schedules) ? t.props.schedules : []))
        .map((s: { cron?: string }) => s.cron);
      const missing = crons.filter((cron) => !scheduled.includes(cron));
      if (missing.length > 0) {
        reportViolation(`worker ${String(script.props.scriptName)} lacks cron ${missing.join(", ")}`, script.urn);
      }
    }
  },
};

export const machineSizeAndCap: ResourceValidationPolicy = {
  name: "machine-size-and-cap",
  description: "The machine cap and machine size the worker is given stay within the organization's bounds.",
  enforcementLevel: "mandatory",
  configSchema: {
    properties: {
      maxMachines: { type: "integer", default: defaultPolicyConfig.maxMachines },
      maxCpus: { type: "integer", default: defaultPolicyConfig.maxCpus },
      maxMemoryMb: { type: "integer", default: defaultPolicyConfig.maxMemoryMb },
      cpuKinds: { ...stringArray, default: defaultPolicyConfig.cpuKinds },
    },
  },
  validateResource(args, reportViolation) {
    if (args.type !== types.script) return;
    const config = configOf(args);
    const bounded = (name: VarName, min: number, max: number) => {
      const value = Number(plainText(args.props, name));
      if (!Number.isInteger(value) || value < min || value > max) {
        reportViolation(`${name} is ${plainText(args.props, name) ?? "missing"}; allowed ${min}..${max}`);
      }
      return value;
    };
    bounded("MAX_MACHINES", 1, config.maxMachines);
    const cpus = bounded("MACHINE_CPUS", 1, config.maxCpus);
    const memory = bounded("MACHINE_MEMORY_MB", 256, config.maxMemoryMb);
    const kind = plainText(args.props, "MACHINE_CPU_KIND");
    if (!kind || !config.cpuKinds.includes(kind)) {
      reportViolation(`MACHINE_CPU_KIND is ${kind ?? "missing"}; allowed ${config.cpuKinds.join(", ")}`);
    }
    // Within the organization's bounds, the size must still be one Fly creates (per-CPU memory
    // floors and ceilings, CPU counts, 256 MB steps), or every machine create fails after `up`.
    const flyRefuses =
      kind && config.cpuKinds.includes(kind) && Number.isInteger(cpus) && Number.isInteger(memory)
        ? machineSizeProblem({ cpu_kind: kind, cpus, memory_mb: memory })
        : undefined;
    if (flyRefuses) reportViolation(`Fly refuses this machine size: ${flyRefuses}`);
  },
};

export const regionAllowList: ResourceValidationPolicy = {
  name: "region-allow-list",
  description: "Machines, buckets and Redis live only in allowed regions.",
  enforcementLevel: "mandatory",
  configSchema: {
    properties: {
      flyRegions: { ...stringArray, default: defaultPolicyConfig.flyRegions },
      r2Locations: { ...stringArray, default: defaultPolicyConfig.r2Locations },
      upstashRegions: { ...stringArray, default: defaultPolicyConfig.upstashRegions },
    },
  },
  validateResource(args, reportViolation) {
    const config = configOf(args);
    const check = (what: string, value: unknown, allowed: string[]) => {
      if (typeof value !== "string" || !allowed.includes(value)) {
        reportViolation(`${what} ${String(value ?? "missing")} is not in the allow-list (${allowed.join(", ")})`);
      }
    };
    if (args.type === types.script) check("FLY_REGION", plainText(args.props, "FLY_REGION"), config.flyRegions);
    if (args.type === types.bucket) check("R2 location", args.props.location, config.r2Locations);
    if (args.type === types.redis) {
      const region = args.props.region === "global" ? args.props.primaryRegion : args.props.region;
      check("Upstash region", region, config.upstashRegions);
    }
  },
};

/** The physical name each resource type is known by in its cloud. */
const physicalName: Record<string, string> = {
  [types.bucket]: "name",
  [types.queue]: "queueName",
  [types.script]: "scriptName",
  [types.redis]: "databaseName",
  [types.flyApp]: "name",
};

export const namingConvention: ResourceValidationPolicy = {
  name: "naming-convention",
  description:
    "Cloud names are lowercase, dash-separated and start with tcoder- so an account's resources are findable.",
  enforcementLevel: "advisory",
  configSchema: { properties: { namePattern: { type: "string", default: defaultPolicyConfig.namePattern } } },
  validateResource(args: ResourceValidationArgs, reportViolation: ReportViolation) {
    const key = physicalName[args.type];
    if (!key) return;
    const value = args.props[key];
    if (typeof value !== "string") return;
    const pattern = configOf(args).namePattern;
    if (!new RegExp(pattern).test(value)) reportViolation(`${key} ${value} does not match ${pattern}`);
  },
};

export const stackTags: StackValidationPolicy = {
  name: "stack-tags",
  description: "Stacks carry environment and owner tags (pulumi stack tag set) so costs and alerts can be routed.",
  enforcementLevel: "advisory",
  configSchema: {
    properties: { requiredStackTags: { ...stringArray, default: defaultPolicyConfig.requiredStackTags } },
  },
  validateStack(args: StackValidationArgs, reportViolation: ReportViolation) {
    const missing = configOf(args).requiredStackTags.filter((tag) => !args.stackTags.has(tag));
    if (missing.length > 0) reportViolation(`stack tags missing: ${missing.join(", ")}`);
  },
};

export const policies: Policies = [
  noSecretInPlainTextBinding,
  bucketsNotPublicUnlessConfigured,
  queueHasDeadLetterQueue,
  workerHasCron,
  machineSizeAndCap,
  regionAllowList,
  namingConvention,
  stackTags,
];
