/**
 * Runs `infra/index.ts` under `pulumi.runtime.setMocks` with a stack's real config file and
 * records every resource registration as the engine would see it: type, name, parent and the
 * serialized inputs, where secrets are still marked (the mock's own view has them unwrapped).
 */
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as pulumi from "@pulumi/pulumi";
import { vi } from "vitest";
import { parse } from "yaml";
import { configKeyOf, configuredSecretNames } from "../src/config.ts";

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

const sigKey = "4dabf18193072939515e22adb298388d";
const secretSig = "1b47061264138c4ac30d75fd1eb44270";
const resourceSig = "5cf8f73096256a8f31e491e813e4eb8e";
const unknownValue = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";

/** Placeholder a secret is marked with in `Plain` values, so a test can see where secrets went. */
export const SECRET = "[secret]";

export type Plain = string | number | boolean | null | Plain[] | { [key: string]: Plain };

export interface RegisteredResource {
  type: string;
  name: string;
  urn: string;
  custom: boolean;
  parentUrn: string | undefined;
  /** Inputs as sent to the engine, secrets replaced by `SECRET`. */
  inputs: Record<string, Plain>;
  /** Inputs as the provider would receive them (secrets in the clear). */
  rawInputs: Record<string, unknown>;
  /** What the mocked provider answered: inputs plus computed outputs (ids, domains, tokens). */
  state: Record<string, unknown>;
  /** Input property → URNs of the resources it was computed from. */
  propertyDependencies: Record<string, string[]>;
  /** URNs this resource waits for (explicit dependsOn and input dependencies). */
  dependencies: string[];
}

export interface StackOutput {
  value: unknown;
  secret: boolean;
}

export interface ProgramRun {
  stack: string;
  config: Record<string, string>;
  secretConfig: Record<string, string>;
  resources: RegisteredResource[];
  outputs: Record<string, StackOutput>;
  parentOf(resource: RegisteredResource): RegisteredResource | undefined;
  byType(type: string): RegisteredResource[];
  one(type: string, name?: string): RegisteredResource;
}

/** The stack file's `config:` map as the engine hands it to a program (objects as JSON). */
export function stackFileConfig(stack: string): Record<string, string> {
  const file = parse(readFileSync(join(repoRoot, `Pulumi.${stack}.yaml`), "utf8")) as {
    config?: Record<string, unknown>;
  };
  return Object.fromEntries(
    Object.entries(file.config ?? {})
      // `{secure: v1:…}` values are ciphertext only the stack can decrypt; tests use placeholders.
      .filter(([, value]) => !(typeof value === "object" && value !== null && "secure" in value))
      .map(([key, value]) => [key, typeof value === "string" ? value : JSON.stringify(value)]),
  );
}

/** Deterministic stand-ins for the secrets a stack sets with `pulumi config set --secret`. */
export function placeholderSecrets(): Record<string, string> {
  return Object.fromEntries(
    configuredSecretNames.map((name) => [`tcoder:${configKeyOf(name)}`, `test-${configKeyOf(name)}-0123456789abcdef`]),
  );
}

function fakeOutputs(type: string, name: string, inputs: Record<string, unknown>): Record<string, unknown> {
  switch (type) {
    case "cloudflare:index/r2ManagedDomain:R2ManagedDomain":
      return { domain: `pub-${String(inputs.bucketName)}.r2.dev` };
    case "cloudflare:index/accountToken:AccountToken":
      return { value: "mock-r2-token-value" };
    case "cloudflare:index/queue:Queue":
      return { queueId: `${String(inputs.queueName)}-id` };
    case "upstash:index/redisDatabase:RedisDatabase":
      return {
        endpoint: `${String(inputs.databaseName)}.upstash.io`,
        restToken: "mock-upstash-rest-token",
        password: "mock-upstash-password",
        readOnlyRestToken: "mock-upstash-ro-token",
      };
    case "command:local:Command": {
      const environment = unwrapSecret(inputs.environment) as Record<string, unknown> | undefined;
      const image = String(environment?.IMAGE ?? "");
      // The build command prints the pushed digest reference last on stdout. The command provider
      // makes every output secret when any input is (FLY_API_TOKEN is), as the engine shows.
      const stdout = `pushed\n${image.slice(0, image.lastIndexOf(":"))}@sha256:${"ab".repeat(32)}\n`;
      return { stdout: environment === inputs.environment ? stdout : { [sigKey]: secretSig, value: stdout } };
    }
    case "pulumi-nodejs:dynamic/fly:App":
      return { appId: `fly-app-id-${name}`, status: "deployed" };
    default:
      return {};
  }
}

/** The mock sees a map holding a secret as one secret-wrapped value. */
function unwrapSecret(value: unknown): unknown {
  const record = value as Record<string, unknown> | undefined;
  return record?.[sigKey] === secretSig ? record.value : value;
}

/** The value a provider would receive: every secret unwrapped. */
function reveal(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(reveal);
  if (value !== null && typeof value === "object") {
    const record = value as Record<string, unknown>;
    if (record[sigKey] === secretSig) return reveal(record.value);
    return Object.fromEntries(Object.entries(record).map(([k, v]) => [k, reveal(v)]));
  }
  return value;
}

function toPlain(value: unknown): Plain {
  if (value === null || value === undefined) return null;
  if (typeof value === "string") return value === unknownValue ? "[unknown]" : value;
  if (typeof value === "number" || typeof value === "boolean") return value;
  if (Array.isArray(value)) return value.map(toPlain);
  if (typeof value === "object") {
    const record = value as Record<string, unknown>;
    if (record[sigKey] === secretSig) return SECRET;
    if (record[sigKey] === resourceSig) return `[resource ${String(record.urn)}]`;
    return Object.fromEntries(Object.entries(record).map(([k, v]) => [k, toPlain(v)]));
  }
  return String(value);
}

interface RegisterRequest {
  getType(): string;
  getName(): string;
  getParent(): string;
  getCustom(): boolean;
  getObject(): { toJavaScript(): Record<string, unknown> } | undefined;
  getDependenciesList(): string[];
  getPropertydependenciesMap(): { forEach(fn: (value: { getUrnsList(): string[] }, key: string) => void): void };
}
type Callback = (err: unknown, response?: { getUrn(): string }) => void;
interface MonitorLike {
  registerResource(req: RegisterRequest, callback: Callback): Promise<void>;
}

/** Runs the program for `stack` (config from `Pulumi.<stack>.yaml` plus placeholder secrets). */
export async function runProgram(
  stack: string,
  /** Config to change for this run; `undefined` removes a key. */
  overrides: Record<string, string | undefined> = {},
): Promise<ProgramRun> {
  const secretConfig = placeholderSecrets();
  const config: Record<string, string> = { ...stackFileConfig(stack), ...secretConfig };
  for (const [key, value] of Object.entries(overrides)) {
    if (value === undefined) delete config[key];
    else config[key] = value;
  }
  const resources: RegisteredResource[] = [];
  const states = new Map<string, Record<string, unknown>>();

  await pulumi.runtime.setMocks(
    {
      newResource(args) {
        const inputs = args.inputs as Record<string, unknown>;
        const state = { ...inputs, ...fakeOutputs(args.type, args.name, inputs) };
        delete state.__provider;
        states.set(`${args.type}::${args.name}`, state);
        return { id: args.custom ? `${args.name}-id` : undefined, state };
      },
      call(args) {
        // `pulumi preview` must work offline with dummy credentials: no data source or invoke.
        throw new Error(`the program called ${args.token}; preview must not call a cloud API`);
      },
    },
    "tcoder",
    stack,
    false,
  );

  const monitor = pulumi.runtime.getMonitor() as unknown as MonitorLike;
  const register = monitor.registerResource.bind(monitor);
  monitor.registerResource = (req, callback) => {
    const raw = req.getObject()?.toJavaScript() ?? {};
    const propertyDependencies: Record<string, string[]> = {};
    req.getPropertydependenciesMap().forEach((deps, key) => {
      propertyDependencies[key] = deps.getUrnsList();
    });
    return register(req, (err, response) => {
      if (!err && response) {
        const { __provider: _, ...inputs } = raw;
        resources.push({
          type: req.getType(),
          name: req.getName(),
          urn: response.getUrn(),
          custom: req.getCustom(),
          parentUrn: req.getParent() || undefined,
          inputs: toPlain(inputs) as Record<string, Plain>,
          rawInputs: reveal(inputs) as Record<string, unknown>,
          state: reveal(states.get(`${req.getType()}::${req.getName()}`) ?? {}) as Record<string, unknown>,
          propertyDependencies,
          dependencies: req.getDependenciesList(),
        });
      }
      callback(err, response);
    });
  };

  pulumi.runtime.setAllConfig(
    config,
    Object.keys(secretConfig).filter((key) => key in config),
  );
  vi.resetModules();
  const program = (await import("../index.ts")) as Record<string, unknown>;
  const outputs: Record<string, StackOutput> = {};
  // Awaiting every export surfaces a failed input (a bundle that does not build) as this
  // call's rejection instead of a registration that never finishes.
  await Promise.all(
    Object.entries(program).map(async ([key, value]) => {
      if (!pulumi.Output.isInstance(value)) {
        outputs[key] = { value, secret: false };
        return;
      }
      const output = value as unknown as { promise(): Promise<unknown> } & pulumi.Output<unknown>;
      outputs[key] = { value: await output.promise(), secret: await pulumi.isSecret(output) };
    }),
  );
  await (pulumi.runtime as unknown as { waitForRPCs(): Promise<void> }).waitForRPCs();

  const byUrn = new Map(resources.map((r) => [r.urn, r]));
  return {
    stack,
    config,
    secretConfig,
    resources,
    outputs,
    parentOf: (resource) => (resource.parentUrn ? byUrn.get(resource.parentUrn) : undefined),
    byType: (type) => resources.filter((r) => r.type === type),
    one(type, name) {
      const found = resources.filter((r) => r.type === type && (name === undefined || r.name === name));
      if (found.length !== 1) throw new Error(`expected one ${type} ${name ?? ""}, found ${found.length}`);
      return found[0] as RegisteredResource;
    },
  };
}
