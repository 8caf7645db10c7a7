/**
 * `npm run infra:check`: the engine's own `pulumi preview --diff` of every committed stack
 * (`Pulumi.<stack>.yaml`), offline, with dummy credentials and the policy pack enforced, compared
 * with `infra/__snapshots__/<stack>.preview.txt`. Exits non-zero on any error.
 *
 * A stack whose provider plugins this machine cannot have (build.sh names them and the module
 * proxy's answer) is reported NOT PREVIEWED with the engine's own error; `--allow-missing-providers`
 * lets such a run pass, and nothing else.
 */
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { configKeyOf, configuredSecretNames } from "../src/config.ts";
import { createEngine, ensureToolchain, missingProviders, repoRoot } from "./engine.ts";

const allowMissingProviders = process.argv.includes("--allow-missing-providers");
const updateSnapshots = process.env.UPDATE_PREVIEW_SNAPSHOT === "1";

/** Credentials a provider checks for shape only; preview makes no API call (the tests assert it). */
const dummyEnv = {
  CLOUDFLARE_API_TOKEN: "0".repeat(40),
  UPSTASH_EMAIL: "preview@example.com",
  UPSTASH_API_KEY: "0".repeat(36),
};
const dummySecret = (key: string) => `preview-${key}-0123456789abcdef`;

function committedStacks(): string[] {
  return readdirSync(repoRoot)
    .map((file) => /^Pulumi\.([\w-]+)\.yaml$/.exec(file)?.[1])
    .filter((stack): stack is string => stack !== undefined)
    .sort();
}

/** Values that change with every run or unrelated commit, named instead. */
function redact(text: string): string {
  return text
    .replace(/"[0-9a-f]{64}"/g, '"<sha256>"')
    .replace(/:[0-9a-f]{16}"/g, ':<image source hash>"')
    .replace(/^Duration: .*$/gm, "Duration: <duration>")
    .replace(/\.infra-check-[\w]+/g, "<project>");
}

async function previewStack(engine: ReturnType<typeof createEngine>, stack: string) {
  // A project folder beside infra/ holding copies of Pulumi.yaml and the stack file: `stack init`
  // and `config set --secret` write the encryption salt and ciphertext there, never into the repo.
  const project = mkdtempSync(join(repoRoot, ".infra-check-"));
  try {
    const pulumiYaml = readFileSync(join(repoRoot, "Pulumi.yaml"), "utf8").replace(/^main: (.*)$/m, "main: ../$1");
    writeFileSync(join(project, "Pulumi.yaml"), pulumiYaml);
    cpSync(join(repoRoot, `Pulumi.${stack}.yaml`), join(project, `Pulumi.${stack}.yaml`));
    const run = (args: string[], input?: string) => engine.pulumi([...args, "--stack", stack], { cwd: project, input });
    await run(["stack", "init"]);
    const secrets = [...configuredSecretNames.map((name) => `tcoder:${configKeyOf(name)}`), "upstash:apiKey"];
    for (const key of secrets) await run(["config", "set", "--secret", key], dummySecret(key));
    await run(["config", "set", "upstash:email", dummyEnv.UPSTASH_EMAIL]);
    return await run(["preview", "--diff", "--policy-pack", join("..", "infra", "policy")]);
  } finally {
    rmSync(project, { recursive: true, force: true });
  }
}

const bin = ensureToolchain();
const unavailable = new Map(missingProviders(bin).map((p) => [p.name, p]));
const engine = createEngine(bin, dummyEnv);
let failed = 0;
let notPreviewed = 0;

try {
  for (const stack of committedStacks()) {
    const result = await previewStack(engine, stack);
    const output = `${result.stdout}${result.stderr}`;
    const missing = /no resource plugin 'pulumi-resource-([\w-]+)' found/.exec(output)?.[1];
    const known = missing ? unavailable.get(missing) : undefined;
    if (result.code !== 0 && known) {
      notPreviewed++;
      console.log(`stack ${stack}: NOT PREVIEWED: the engine ran the program and stopped at`);
      console.log(`  ${output.match(/error: no resource plugin.*$/m)?.[0] ?? "a missing provider plugin"}`);
      console.log(`  (${known.module} cannot be built here: ${known.reason})`);
      continue;
    }
    if (result.code !== 0) {
      failed++;
      console.log(`stack ${stack}: pulumi preview failed (exit ${result.code})\n${output}`);
      continue;
    }
    const snapshot = join(repoRoot, "infra", "__snapshots__", `${stack}.preview.txt`);
    const text = redact(result.stdout);
    if (updateSnapshots || !existsSync(snapshot)) writeFileSync(snapshot, text);
    if (readFileSync(snapshot, "utf8") !== text) {
      failed++;
      console.log(`stack ${stack}: the preview differs from ${snapshot} (UPDATE_PREVIEW_SNAPSHOT=1 to accept)`);
    } else {
      console.log(`stack ${stack}: previewed, policies passed, matches infra/__snapshots__/${stack}.preview.txt`);
    }
  }
} finally {
  engine.dispose();
}

if (notPreviewed > 0) {
  console.log(
    `${notPreviewed} stack(s) not previewed for want of provider plugins${allowMissingProviders ? " (allowed by --allow-missing-providers)" : ""}`,
  );
}
process.exit(failed > 0 || (notPreviewed > 0 && !allowMissingProviders) ? 1 : 0);
