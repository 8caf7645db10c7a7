import { createHash } from "node:crypto";
import * as pulumi from "@pulumi/pulumi";
import { defaultVars, type SecretName, secrets, settingsSchema } from "@tcoder/worker/bindings";

/** Vars a stack may tune; each starts from `defaultVars` so a stack file lists only what differs. */
export type TunableVar = keyof typeof defaultVars;

/** Secrets the program creates itself (R2 credentials, Redis token); every other secret is stack config. */
export const producedSecrets = ["UPSTASH_REDIS_REST_TOKEN", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY"] as const;
export type ProducedSecret = (typeof producedSecrets)[number];
export type ConfiguredSecret = Exclude<SecretName, ProducedSecret>;

/** `MAX_MACHINES` → `maxMachines`: the `tcoder:` config key a binding is read from. */
export function configKeyOf(bindingName: string): string {
  return bindingName.toLowerCase().replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

export const configuredSecretNames = (Object.keys(secrets) as SecretName[]).filter(
  (name): name is ConfiguredSecret => !(producedSecrets as readonly string[]).includes(name),
);

export interface DomainConfig {
  hostname: string;
  zoneId: string;
}

export interface StackConfig {
  /** Prefix of every physical name (`tcoder-dev-inputs`), so stacks can share an account. */
  namePrefix: string;
  cloudflareAccountId: string;
  /** R2 location hint (apac, eeur, enam, weur, wnam, oc). */
  r2Location: string;
  /** Origins allowed to PUT uploads and GET outputs from a browser. */
  corsOrigins: string[];
  /** Delete uploaded sources this many days after upload; unset keeps them. */
  inputExpiryDays: number | undefined;
  abortMultipartAfterDays: number;
  /** Serve outputs from this hostname (R2 custom domain) instead of the r2.dev managed domain. */
  outputsDomain: DomainConfig | undefined;
  /** Serve the API from this hostname instead of `<script>.<workersSubdomain>.workers.dev`. */
  apiDomain: DomainConfig | undefined;
  /** The account's workers.dev subdomain (`<sub>.workers.dev`); needed when there is no apiDomain. */
  workersSubdomain: string | undefined;
  upstashPrimaryRegion: string;
  flyOrg: string;
  flyAppName: string;
  flyApiBaseUrl: string;
  tunables: Record<TunableVar, string>;
  secrets: Record<ConfiguredSecret, pulumi.Output<string>>;
}

/**
 * Fly app names are global across every Fly user: `tcoder-dev-machines` would be taken by the
 * first adopter. A short hash of the Cloudflare account id makes the default this adopter's own,
 * and stays the same on every run (no random provider, no state).
 */
export function defaultFlyAppName(namePrefix: string, cloudflareAccountId: string): string {
  const suffix = createHash("sha256").update(cloudflareAccountId).digest("hex").slice(0, 8);
  return `${namePrefix}-machines-${suffix}`;
}

/** Reads and validates the `tcoder:` namespace of the current stack. */
export function loadStackConfig(): StackConfig {
  const config = new pulumi.Config("tcoder");
  const stack = pulumi.getStack();
  const namePrefix = config.get("namePrefix") ?? `tcoder-${stack}`;

  const tunables = {} as Record<TunableVar, string>;
  for (const name of Object.keys(defaultVars) as TunableVar[]) {
    const value = config.get(configKeyOf(name)) ?? defaultVars[name];
    const parsed = settingsSchema.shape[name].safeParse(value);
    if (!parsed.success) {
      throw new Error(`tcoder:${configKeyOf(name)} (${name}) is invalid: ${parsed.error.issues[0]?.message}`);
    }
    tunables[name] = value;
  }

  const secretValues = {} as Record<ConfiguredSecret, pulumi.Output<string>>;
  for (const name of configuredSecretNames) secretValues[name] = config.requireSecret(configKeyOf(name));

  const apiDomain = config.getObject<DomainConfig>("apiDomain");
  const workersSubdomain = config.get("workersSubdomain");
  if (!apiDomain && !workersSubdomain) {
    throw new Error("set tcoder:workersSubdomain (your <sub>.workers.dev) or tcoder:apiDomain {hostname, zoneId}");
  }

  const cloudflareAccountId = config.require("cloudflareAccountId");
  return {
    namePrefix,
    cloudflareAccountId,
    r2Location: config.get("r2Location") ?? "enam",
    corsOrigins: config.requireObject<string[]>("corsOrigins"),
    inputExpiryDays: config.getNumber("inputExpiryDays", { min: 1 }),
    abortMultipartAfterDays: config.getNumber("abortMultipartAfterDays", { min: 1 }) ?? 1,
    outputsDomain: config.getObject<DomainConfig>("outputsDomain"),
    apiDomain,
    workersSubdomain,
    upstashPrimaryRegion: config.get("upstashPrimaryRegion") ?? "us-east-1",
    flyOrg: config.get("flyOrg") ?? "personal",
    flyAppName: config.get("flyAppName") ?? defaultFlyAppName(namePrefix, cloudflareAccountId),
    flyApiBaseUrl: config.get("flyApiBaseUrl") ?? "https://api.machines.dev",
    tunables,
    secrets: secretValues,
  };
}
