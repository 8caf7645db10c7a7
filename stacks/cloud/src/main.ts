/** `npm run deploy -- <stack>` / `npm run preview -- <stack>` from the repo root. */
import { type Command, PreflightError, preflight, runStack } from "./deploy.ts";

const usage = "usage: npm run deploy -- <stack>   |   npm run preview -- <stack>   (stacks: dev, prod, …)";

async function main(argv: string[]): Promise<number> {
  const [command, stackName] = argv;
  if ((command !== "preview" && command !== "up") || !stackName) {
    process.stderr.write(`${usage}\n`);
    return 64;
  }
  try {
    preflight();
    await runStack(command as Command, stackName);
    return 0;
  } catch (err) {
    if (err instanceof PreflightError) {
      process.stderr.write(`tcoder ${command} ${stackName}: ${err.message}\n`);
      return 2;
    }
    process.stderr.write(
      `tcoder ${command} ${stackName} failed: ${err instanceof Error ? err.message : String(err)}\n`,
    );
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
