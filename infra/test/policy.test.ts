import type {
  PolicyResource,
  ResourceValidationArgs,
  ResourceValidationPolicy,
  StackValidationPolicy,
} from "@pulumi/policy";
import { crons, defaultVars } from "@tcoder/worker/bindings";
import { beforeAll, describe, expect, test } from "vitest";
import {
  bucketsNotPublicUnlessConfigured,
  machineSizeAndCap,
  namingConvention,
  noSecretInPlainTextBinding,
  policies,
  queueHasDeadLetterQueue,
  regionAllowList,
  stackTags,
  types,
  workerHasCron,
} from "../policy/policies.ts";
import { type ProgramRun, runProgram } from "./mock-program.ts";

type Props = Record<string, unknown>;

/** Runs one policy's validateResource the way the analyzer would, collecting its violations. */
async function violationsOf(policy: ResourceValidationPolicy, type: string, props: Props, config: object = {}) {
  const found: string[] = [];
  const args: ResourceValidationArgs = {
    type,
    props,
    urn: `urn:pulumi:test::tcoder::${type}::r`,
    name: "r",
    opts: {
      protect: false,
      ignoreChanges: [],
      aliases: [],
      customTimeouts: { createSeconds: 0, updateSeconds: 0, deleteSeconds: 0 },
      additionalSecretOutputs: [],
    },
    stackTags: new Map(),
    isType: () => false,
    asType: () => undefined,
    getConfig: <T extends object>() => config as T,
    notApplicable: (reason?: string) => {
      throw new Error(`not applicable: ${reason}`);
    },
  };
  const validations = Array.isArray(policy.validateResource) ? policy.validateResource : [policy.validateResource];
  for (const validate of validations) await validate?.(args, (message) => found.push(message));
  return found;
}

interface FakeResource {
  type: string;
  name: string;
  props: Props;
  dependsOn?: Record<string, string[]>;
}

function stackResources(fakes: FakeResource[]): PolicyResource[] {
  const urnOf = (name: string) => `urn:pulumi:test::tcoder::x::${name}`;
  const byName = new Map<string, PolicyResource>();
  const resources = fakes.map((fake) => {
    const resource = {
      type: fake.type,
      name: fake.name,
      urn: urnOf(fake.name),
      props: fake.props,
      opts: {},
      dependencies: [],
      propertyDependencies: {},
      isType: () => false,
      asType: () => undefined,
    } as unknown as PolicyResource;
    byName.set(fake.name, resource);
    return resource;
  });
  fakes.forEach((fake, i) => {
    const deps: Record<string, PolicyResource[]> = {};
    for (const [prop, names] of Object.entries(fake.dependsOn ?? {})) {
      deps[prop] = names.map((n) => byName.get(n) as PolicyResource);
    }
    (resources[i] as { propertyDependencies: Record<string, PolicyResource[]> }).propertyDependencies = deps;
  });
  return resources;
}

async function stackViolationsOf(
  policy: StackValidationPolicy,
  resources: PolicyResource[],
  tags: Record<string, string> = {},
  config: object = {},
) {
  const found: string[] = [];
  await policy.validateStack(
    {
      resources,
      stackTags: new Map(Object.entries(tags)),
      getConfig: <T extends object>() => config as T,
      notApplicable: (reason?: string) => {
        throw new Error(`not applicable: ${reason}`);
      },
    },
    (message) => found.push(message),
  );
  return found;
}

const plain = (name: string, text: string) => ({ type: "plain_text", name, text });
const sizedWorker = (overrides: Record<string, string> = {}) => ({
  scriptName: "tcoder-dev-api",
  bindings: Object.entries({
    MAX_MACHINES: defaultVars.MAX_MACHINES,
    MACHINE_CPUS: defaultVars.MACHINE_CPUS,
    MACHINE_MEMORY_MB: defaultVars.MACHINE_MEMORY_MB,
    MACHINE_CPU_KIND: defaultVars.MACHINE_CPU_KIND,
    FLY_REGION: defaultVars.FLY_REGION,
    ...overrides,
  }).map(([name, text]) => plain(name, text)),
});

describe("mandatory: no secret in a plain-text worker binding", () => {
  test("passes secrets bound as secret_text", async () => {
    const props = { bindings: [{ type: "secret_text", name: "API_TOKEN", text: "x" }, plain("LOG_LEVEL", "info")] };
    expect(await violationsOf(noSecretInPlainTextBinding, types.script, props)).toEqual([]);
  });
  test("rejects a declared secret bound as plain_text", async () => {
    const props = { bindings: [plain("API_TOKEN", "x")] };
    expect(await violationsOf(noSecretInPlainTextBinding, types.script, props)).toEqual([
      "binding API_TOKEN holds a secret but is plain_text; bind it as secret_text",
    ]);
  });
  test("rejects an undeclared secret-looking plain_text binding", async () => {
    const props = { bindings: [plain("STRIPE_API_KEY", "sk_live")] };
    expect(await violationsOf(noSecretInPlainTextBinding, types.script, props)).toHaveLength(1);
  });
});

describe("mandatory: buckets are not publicly readable unless configured", () => {
  test("passes the output bucket's public domain", async () => {
    const props = { bucketName: "tcoder-dev-outputs", enabled: true };
    expect(await violationsOf(bucketsNotPublicUnlessConfigured, types.managedDomain, props)).toEqual([]);
  });
  test("rejects a public domain on the input bucket", async () => {
    const props = { bucketName: "tcoder-dev-inputs", enabled: true };
    expect(await violationsOf(bucketsNotPublicUnlessConfigured, types.customDomain, props)).toEqual([
      "bucket tcoder-dev-inputs would be publicly readable; add it to publicBuckets if that is intended",
    ]);
  });
  test("passes a bucket the policy config names as public", async () => {
    const props = { bucketName: "tcoder-dev-inputs", enabled: true };
    const config = { publicBuckets: ["^tcoder-dev-inputs$"] };
    expect(await violationsOf(bucketsNotPublicUnlessConfigured, types.managedDomain, props, config)).toEqual([]);
  });
});

describe("mandatory: every queue has a dead-letter queue", () => {
  const queues: FakeResource[] = [
    { type: types.queue, name: "q", props: { queueName: "tcoder-uploads" } },
    { type: types.queue, name: "dlq", props: { queueName: "tcoder-uploads-dlq" } },
  ];
  test("passes a consumer that dead-letters to another queue of the stack", async () => {
    const consumer = {
      type: types.consumer,
      name: "c",
      props: { deadLetterQueue: "tcoder-uploads-dlq" },
      dependsOn: { queueId: ["q"] },
    };
    expect(await stackViolationsOf(queueHasDeadLetterQueue, stackResources([...queues, consumer]))).toEqual([]);
  });
  test("rejects a consumer without a dead-letter queue", async () => {
    const consumer = { type: types.consumer, name: "c", props: {}, dependsOn: { queueId: ["q"] } };
    const found = await stackViolationsOf(queueHasDeadLetterQueue, stackResources([...queues, consumer]));
    expect(found).toContain("queue tcoder-uploads's consumer has no deadLetterQueue");
  });
  test("rejects a queue nobody consumes", async () => {
    const found = await stackViolationsOf(queueHasDeadLetterQueue, stackResources(queues));
    expect(found).toContain("queue tcoder-uploads has no consumer (and so no dead-letter queue)");
  });
  test("rejects dead-lettering to a queue the stack does not have", async () => {
    const consumer = {
      type: types.consumer,
      name: "c",
      props: { deadLetterQueue: "elsewhere" },
      dependsOn: { queueId: ["q"] },
    };
    const found = await stackViolationsOf(queueHasDeadLetterQueue, stackResources([...queues, consumer]));
    expect(found.join()).toMatch(/dead-letters to elsewhere/);
  });
});

describe("mandatory: the worker has its cron", () => {
  const script = { type: types.script, name: "w", props: { scriptName: "tcoder-dev-api" } };
  test("passes a trigger with every declared cron", async () => {
    const trigger = {
      type: types.cron,
      name: "t",
      props: { schedules: crons.map((cron) => ({ cron })) },
      dependsOn: { scriptName: ["w"] },
    };
    expect(await stackViolationsOf(workerHasCron, stackResources([script, trigger]))).toEqual([]);
  });
  test("rejects a worker without a cron trigger", async () => {
    expect(await stackViolationsOf(workerHasCron, stackResources([script]))).toEqual([
      `worker tcoder-dev-api lacks cron ${crons.join(", ")}`,
    ]);
  });
  test("rejects a trigger with another schedule", async () => {
    const trigger = {
      type: types.cron,
      name: "t",
      props: { scriptName: "tcoder-dev-api", schedules: [{ cron: "0 * * * *" }] },
    };
    expect(await stackViolationsOf(workerHasCron, stackResources([script, trigger]))).toHaveLength(1);
  });
});

describe("mandatory: machine size and cap within bounds", () => {
  test("passes the binding module's defaults", async () => {
    expect(await violationsOf(machineSizeAndCap, types.script, sizedWorker())).toEqual([]);
  });
  test("rejects a cap above the bound", async () => {
    expect(await violationsOf(machineSizeAndCap, types.script, sizedWorker({ MAX_MACHINES: "50" }))).toEqual([
      "MAX_MACHINES is 50; allowed 1..10",
    ]);
  });
  test("rejects too many CPUs and an unknown cpu kind", async () => {
    const props = sizedWorker({ MACHINE_CPUS: "16", MACHINE_MEMORY_MB: "1024", MACHINE_CPU_KIND: "gpu" });
    const found = await violationsOf(machineSizeAndCap, types.script, props);
    expect(found).toEqual(["MACHINE_CPUS is 16; allowed 1..8", "MACHINE_CPU_KIND is gpu; allowed shared, performance"]);
  });
  test("rejects sizes within the bounds that Fly does not create", async () => {
    const size = (MACHINE_CPU_KIND: string, MACHINE_CPUS: string, MACHINE_MEMORY_MB: string) =>
      violationsOf(machineSizeAndCap, types.script, sizedWorker({ MACHINE_CPU_KIND, MACHINE_CPUS, MACHINE_MEMORY_MB }));
    expect(await size("performance", "2", "2048")).toEqual([
      "Fly refuses this machine size: memory_mb 2048 is below the minimum of 4096 MB for 2 performance CPUs (2048 MB each)",
    ]);
    expect(await size("shared", "2", "256")).toEqual([
      "Fly refuses this machine size: memory_mb 256 is below the minimum of 512 MB for 2 shared CPUs (256 MB each)",
    ]);
    expect(await size("shared", "1", "4096")).toEqual([
      "Fly refuses this machine size: memory_mb 4096 is above the maximum of 2048 MB for 1 shared CPUs (2048 MB each)",
    ]);
    expect(await size("performance", "3", "6144")).toEqual([
      "Fly refuses this machine size: 3 performance CPUs is not a machine size; choose one of 1, 2, 4, 6, 8, 10, 12, 14, 16",
    ]);
    expect(await size("shared", "1", "1000")).toEqual([
      "Fly refuses this machine size: memory_mb 1000 is not a multiple of 256",
    ]);
    expect(await size("shared", "1", "256")).toEqual([]);
    expect(await size("performance", "1", "2048")).toEqual([]);
  });
  test("bounds come from policy config", async () => {
    const found = await violationsOf(machineSizeAndCap, types.script, sizedWorker({ MAX_MACHINES: "3" }), {
      maxMachines: 2,
    });
    expect(found).toEqual(["MAX_MACHINES is 3; allowed 1..2"]);
  });
  test("rejects a worker without a cap", async () => {
    const props = { bindings: sizedWorker().bindings.filter((b) => b.name !== "MAX_MACHINES") };
    expect(await violationsOf(machineSizeAndCap, types.script, props)).toEqual([
      "MAX_MACHINES is missing; allowed 1..10",
    ]);
  });
});

describe("mandatory: region allow-list", () => {
  test("passes allowed Fly, R2 and Upstash regions", async () => {
    expect(await violationsOf(regionAllowList, types.script, sizedWorker())).toEqual([]);
    expect(await violationsOf(regionAllowList, types.bucket, { location: "enam" })).toEqual([]);
    expect(await violationsOf(regionAllowList, types.redis, { region: "global", primaryRegion: "us-east-1" })).toEqual(
      [],
    );
  });
  test("rejects regions outside the list", async () => {
    expect(await violationsOf(regionAllowList, types.script, sizedWorker({ FLY_REGION: "syd" }))).toHaveLength(1);
    expect(await violationsOf(regionAllowList, types.bucket, { location: "apac" })).toHaveLength(1);
    expect(
      await violationsOf(regionAllowList, types.redis, { region: "global", primaryRegion: "ap-southeast-1" }),
    ).toEqual([
      "Upstash region ap-southeast-1 is not in the allow-list (us-east-1, us-west-1, us-west-2, eu-west-1, eu-central-1)",
    ]);
  });
});

describe("advisory: naming convention and stack tags", () => {
  test("naming: passes tcoder- names and flags others", async () => {
    expect(await violationsOf(namingConvention, types.queue, { queueName: "tcoder-uploads" })).toEqual([]);
    expect(await violationsOf(namingConvention, types.bucket, { name: "MyBucket" })).toHaveLength(1);
    expect(namingConvention.enforcementLevel).toBe("advisory");
  });
  test("tags: passes a stack with environment and owner, flags one without", async () => {
    expect(await stackViolationsOf(stackTags, [], { environment: "dev", owner: "media" })).toEqual([]);
    expect(await stackViolationsOf(stackTags, [], { environment: "dev" })).toEqual(["stack tags missing: owner"]);
    expect(stackTags.enforcementLevel).toBe("advisory");
  });
});

describe("the program passes its own policy pack", () => {
  let run: ProgramRun;
  beforeAll(async () => {
    run = await runProgram("dev");
  });

  test("the mocked dev plan has no violation of any policy", async () => {
    const byUrn = new Map<string, PolicyResource>();
    const resources = run.resources.map((r) => {
      const resource = {
        type: r.type,
        name: r.name,
        urn: r.urn,
        props: { ...r.rawInputs, ...r.state },
        propertyDependencies: {},
      } as unknown as PolicyResource;
      byUrn.set(r.urn, resource);
      return resource;
    });
    run.resources.forEach((r, i) => {
      (resources[i] as { propertyDependencies: Record<string, PolicyResource[]> }).propertyDependencies =
        Object.fromEntries(
          Object.entries(r.propertyDependencies).map(([k, urns]) => [k, urns.flatMap((u) => byUrn.get(u) ?? [])]),
        );
    });

    const found: string[] = [];
    for (const policy of policies) {
      if ("validateStack" in policy) {
        found.push(...(await stackViolationsOf(policy, resources, { environment: "dev", owner: "test" })));
        continue;
      }
      for (const resource of resources) {
        found.push(...(await violationsOf(policy, resource.type, resource.props)).map((m) => `${resource.name}: ${m}`));
      }
    }
    expect(found).toEqual([]);
  });
});
