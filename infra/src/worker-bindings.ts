import type * as cloudflare from "@pulumi/cloudflare";
import * as pulumi from "@pulumi/pulumi";
import { queueProducers, type SecretName, secrets, stackQueueName, type VarName, vars } from "@tcoder/worker/bindings";

export type WorkerBinding = cloudflare.types.input.WorkersScriptBinding;

export interface WorkerBindingValues {
  vars: Record<VarName, pulumi.Input<string>>;
  secrets: Record<SecretName, pulumi.Input<string>>;
  /** The stack's name prefix, which its queue names carry. */
  namePrefix: string;
}

/**
 * The worker's bindings, generated from the binding module: every var as `plain_text`, every
 * secret as `secret_text` (and a Pulumi secret), every queue producer as `queue`. Sorted by name
 * so the plan reads the same every run.
 */
export function workerBindings(values: WorkerBindingValues): WorkerBinding[] {
  const plain = (Object.keys(vars) as VarName[]).map(
    (name): WorkerBinding => ({ type: "plain_text", name, text: values.vars[name] }),
  );
  const secret = (Object.keys(secrets) as SecretName[]).map(
    (name): WorkerBinding => ({ type: "secret_text", name, text: pulumi.secret(values.secrets[name]) }),
  );
  const producers = Object.entries(queueProducers).map(
    ([name, queueName]): WorkerBinding => ({
      type: "queue",
      name,
      queueName: stackQueueName(values.namePrefix, queueName),
    }),
  );
  return [...plain, ...secret, ...producers].sort((a, b) => String(a.name).localeCompare(String(b.name)));
}
