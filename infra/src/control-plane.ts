import { readFileSync } from "node:fs";
import { basename, isAbsolute, join, relative } from "node:path";
import * as cloudflare from "@pulumi/cloudflare";
import * as pulumi from "@pulumi/pulumi";
import {
  compatibilityDate,
  compatibilityFlags,
  crons,
  queues,
  type SecretName,
  type VarName,
} from "@tcoder/worker/bindings";
import { buildWorkerBundle, type WorkerBundle } from "@tcoder/worker/bundle";
import type { DomainConfig } from "./config.ts";
import type { QueueKey, QueuePair } from "./events.ts";
import { sha256Hex } from "./storage.ts";
import { workerBindings } from "./worker-bindings.ts";

/**
 * The worker built from `worker/` by this run, or the prebuilt bundle at TCODER_WORKER_BUNDLE
 * (so CI can deploy exactly the bundle it tested).
 */
export function workerBundle(repoRoot: string): Promise<WorkerBundle> {
  const prebuilt = process.env.TCODER_WORKER_BUNDLE;
  if (prebuilt) return Promise.resolve({ path: prebuilt, hash: sha256Hex(readFileSync(prebuilt)) });
  return buildWorkerBundle({ outDir: join(repoRoot, "infra", "dist", "worker") });
}

/**
 * A file inside the project as a relative path (the provider runs in the project directory), so a
 * checkout elsewhere diffs clean; one outside it (a prebuilt bundle) stays as given.
 */
function projectRelative(projectDir: string, path: string): string {
  const inside = relative(projectDir, path);
  return inside.startsWith("..") || isAbsolute(inside) ? path : inside;
}

/** The one var the control plane fills itself: its own public URL. */
type SelfUrlVar = Extract<VarName, "CONTROL_PLANE_URL">;

export interface ControlPlaneArgs {
  accountId: pulumi.Input<string>;
  scriptName: string;
  bundle: pulumi.Input<WorkerBundle>;
  /** The program's directory (where Pulumi.yaml is): the bundle is named relative to it. */
  projectDir: string;
  vars: Record<Exclude<VarName, SelfUrlVar>, pulumi.Input<string>>;
  secrets: Record<SecretName, pulumi.Input<string>>;
  queues: Record<QueueKey, QueuePair>;
  /** The stack's name prefix, which its queue names carry (producer bindings name queues). */
  namePrefix: string;
  /** Serve the API on this hostname; otherwise on `<script>.<workersSubdomain>.workers.dev`. */
  apiDomain?: DomainConfig;
  workersSubdomain?: string;
}

/** The public URL the API answers on, known before anything is created. */
export function publicApiUrl(args: Pick<ControlPlaneArgs, "scriptName" | "apiDomain" | "workersSubdomain">): string {
  if (args.apiDomain) return `https://${args.apiDomain.hostname}`;
  if (!args.workersSubdomain) throw new Error("publicApiUrl needs apiDomain or workersSubdomain");
  return `https://${args.scriptName}.${args.workersSubdomain}.workers.dev`;
}

/** The worker (API, queue consumers, cron) with every binding the binding module declares. */
export class ControlPlane extends pulumi.ComponentResource {
  readonly script: cloudflare.WorkersScript;
  readonly apiUrl: pulumi.Output<string>;

  constructor(name: string, args: ControlPlaneArgs, opts?: pulumi.ComponentResourceOptions) {
    super("tcoder:index:ControlPlane", name, {}, opts);
    const { accountId, scriptName } = args;
    const apiUrl = publicApiUrl(args);
    const bundle = pulumi.output(args.bundle);

    this.script = new cloudflare.WorkersScript(
      `${name}-worker`,
      {
        accountId,
        scriptName,
        contentFile: bundle.path.apply((path) => projectRelative(args.projectDir, path)),
        // The bundle's sha256 decides whether a new version is uploaded.
        contentSha256: bundle.hash,
        mainModule: bundle.path.apply((path) => basename(path)),
        compatibilityDate,
        compatibilityFlags: [...compatibilityFlags],
        bindings: workerBindings({
          vars: { ...args.vars, CONTROL_PLANE_URL: apiUrl },
          secrets: args.secrets,
          namePrefix: args.namePrefix,
        }),
        observability: { enabled: true },
      },
      // Producer bindings name queues by the binding module's names; Cloudflare rejects the upload
      // unless those queues already exist.
      { parent: this, dependsOn: Object.values(args.queues).flatMap((pair) => [pair.queue, pair.deadLetterQueue]) },
    );

    for (const [key, declared] of Object.entries(queues) as [QueueKey, (typeof queues)[QueueKey]][]) {
      new cloudflare.QueueConsumer(
        `${name}-${key}-consumer`,
        {
          accountId,
          queueId: args.queues[key].queue.queueId,
          scriptName: this.script.scriptName,
          type: "worker",
          deadLetterQueue: args.queues[key].deadLetterQueue.queueName,
          settings: {
            batchSize: declared.maxBatchSize,
            maxRetries: declared.maxRetries,
            maxWaitTimeMs: declared.maxBatchTimeoutSeconds * 1000,
          },
        },
        { parent: this },
      );
    }

    new cloudflare.WorkersCronTrigger(
      `${name}-cron`,
      { accountId, scriptName: this.script.scriptName, schedules: crons.map((cron) => ({ cron })) },
      { parent: this },
    );

    if (args.apiDomain) {
      new cloudflare.WorkersCustomDomain(
        `${name}-domain`,
        {
          accountId,
          hostname: args.apiDomain.hostname,
          zoneId: args.apiDomain.zoneId,
          service: this.script.scriptName,
        },
        { parent: this },
      );
    } else {
      new cloudflare.WorkersScriptSubdomain(
        `${name}-workers-dev`,
        { accountId, scriptName: this.script.scriptName, enabled: true, previewsEnabled: false },
        { parent: this },
      );
    }

    this.apiUrl = this.script.scriptName.apply(() => apiUrl);
    this.registerOutputs({ scriptName: this.script.scriptName, apiUrl: this.apiUrl });
  }
}
