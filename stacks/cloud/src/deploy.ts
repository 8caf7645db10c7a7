/**
 * Runs the Pulumi program at the repo root (`Pulumi.yaml` → `infra/index.ts`) for one stack through
 * the Automation API: the same program, policy pack and stack files as `pulumi preview|up` and CI.
 */
import { spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as pulumi from "@pulumi/pulumi";

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
export const policyPack = join(repoRoot, "infra", "policy");

export type Command = "preview" | "up";

/** A reason the deploy cannot start, with the exact step that fixes it. */
export class PreflightError extends Error {
  constructor(
    readonly code: "pulumi_cli_missing" | "pulumi_not_logged_in" | "cloudflare_token_missing",
    message: string,
  ) {
    super(message);
  }
}

/** Checks what the Automation API cannot check for us before it fails with a stack trace. */
export function preflight(env: NodeJS.ProcessEnv = process.env): void {
  const version = spawnSync("pulumi", ["version"], { env, encoding: "utf8" });
  if (version.error || version.status !== 0) {
    throw new PreflightError(
      "pulumi_cli_missing",
      "The Pulumi CLI is not on PATH. Install it (curl -fsSL https://get.pulumi.com | sh) and run this again.",
    );
  }
  const whoami = spawnSync("pulumi", ["whoami"], { env, encoding: "utf8" });
  if (whoami.status !== 0) {
    throw new PreflightError(
      "pulumi_not_logged_in",
      "Pulumi has no credentials. Set PULUMI_ACCESS_TOKEN or run `pulumi login` (or `pulumi login --local`).",
    );
  }
  if (!env.CLOUDFLARE_API_TOKEN) {
    throw new PreflightError(
      "cloudflare_token_missing",
      "CLOUDFLARE_API_TOKEN is not set. Create an API token (docs/cloud.md, step 1) and export it.",
    );
  }
}

export async function runStack(
  command: Command,
  stackName: string,
  write: (text: string) => void = (t) => process.stdout.write(t),
): Promise<Record<string, unknown>> {
  const stack = await pulumi.automation.LocalWorkspace.selectStack({ stackName, workDir: repoRoot });
  const options = { onOutput: write, policyPacks: [policyPack], diff: true };
  if (command === "preview") {
    const result = await stack.preview(options);
    write(`\n${JSON.stringify(result.changeSummary)}\n`);
    return {};
  }
  const result = await stack.up(options);
  const outputs = Object.fromEntries(
    Object.entries(result.outputs).map(([key, output]) => [key, output.secret ? "[secret]" : output.value]),
  );
  write(`\noutputs of ${stackName}:\n${JSON.stringify(outputs, null, 2)}\n`);
  return outputs;
}
