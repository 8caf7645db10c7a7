/**
 * `tcoder`: run the pipeline locally and talk to any tcoder API.
 *
 *   tcoder up [--demo] [--once] [--fresh]        the local cloud (npm start = up --demo)
 *   tcoder transcode <file…> [--preset] [--out] [--json]
 *   tcoder status [jobId] | jobs | cancel <jobId> | down
 *
 * Commands other than `up` talk to --api/--token, else TCODER_API_URL/TCODER_API_TOKEN, else the
 * stack running from --dir; `transcode` starts an embedded stack for its duration when none runs.
 */
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { type LocalStack, readRunningStack, runnerKinds, type StackLogger, startLocalStack } from "../stack.ts";
import { type ApiClient, ApiError, createApiClient } from "./api-client.ts";
import { createProgress } from "./progress.ts";
import { ensureSampleVideo } from "./sample.ts";
import { copyOutputs, describeJob, transcodeFile } from "./transcode.ts";

const usage = `usage: tcoder <command> [options]

commands:
  up [--demo] [--once] [--fresh] [--sample FILE]   start the local stack (and transcode a sample with --demo)
  transcode <file...> [--preset NAME] [--out DIR] [--json]
  status [jobId]                                   a job, or the pipeline's stats
  jobs [--state STATE] [--limit N]                 recent jobs
  cancel <jobId>
  down                                             stop the stack running from --dir

options:
  --dir DIR           local stack state (default .tcoder)
  --port N            local API port (default: a free port; env TCODER_PORT)
  --max-machines N    machine cap of the local stack
  --runner KIND       what runs the local machines: process (default) or container (the image
                      machine-image/Dockerfile builds, as podman containers; npm run image:build)
  --api URL --token T a deployed stack (env TCODER_API_URL, TCODER_API_TOKEN)
  --verbose           more logs`;

const options = {
  demo: { type: "boolean" },
  once: { type: "boolean" },
  fresh: { type: "boolean" },
  sample: { type: "string" },
  preset: { type: "string" },
  out: { type: "string" },
  json: { type: "boolean" },
  state: { type: "string" },
  limit: { type: "string" },
  dir: { type: "string", default: ".tcoder" },
  port: { type: "string" },
  "max-machines": { type: "string" },
  runner: { type: "string" },
  api: { type: "string" },
  token: { type: "string" },
  verbose: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

type Flags = ReturnType<typeof parseArgs<{ options: typeof options; allowPositionals: true }>>["values"];

class UsageError extends Error {}

const intFlag = (name: string, value: string | undefined) => {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new UsageError(`--${name} must be a positive whole number, got "${value}"`);
  return n;
};

function stackLogger(verbose: boolean): StackLogger {
  return (source, line, level = "info") => {
    if (level === "debug" && !verbose) return;
    let text = line;
    if (line.startsWith("{")) {
      try {
        const {
          time: _time,
          level: lineLevel,
          machineId: _machineId,
          message,
          msg,
          ...rest
        } = JSON.parse(line) as Record<string, unknown>;
        if (lineLevel === "debug" && !verbose) return;
        const fields = Object.entries(rest)
          .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
          .join(" ");
        text = `${String(message ?? msg ?? "")} ${fields}`.trim();
      } catch {
        // Not JSON after all: print as is.
      }
    }
    process.stderr.write(`[${source}] ${text}\n`);
  };
}

async function startStack(flags: Flags): Promise<LocalStack> {
  const port = intFlag("port", flags.port ?? process.env.TCODER_PORT);
  const maxMachines = intFlag("max-machines", flags["max-machines"]);
  const runner = runnerKinds.find((kind) => kind === (flags.runner ?? "process"));
  if (!runner) throw new UsageError(`--runner must be ${runnerKinds.join(" or ")}, got "${flags.runner}"`);
  return startLocalStack({
    dir: flags.dir,
    fresh: flags.fresh ?? false,
    runner,
    log: stackLogger(flags.verbose ?? false),
    ...(port === undefined ? {} : { port }),
    ...(maxMachines === undefined ? {} : { maxMachines }),
    ...(flags.verbose ? { vars: { LOG_LEVEL: "debug" } } : {}),
  });
}

/** An API to talk to, and the embedded stack started for it (if any) to stop afterwards. */
async function connect(flags: Flags, { embed }: { embed: boolean }): Promise<{ api: ApiClient; stack?: LocalStack }> {
  const apiUrl = flags.api ?? process.env.TCODER_API_URL;
  if (apiUrl) {
    const token = flags.token ?? process.env.TCODER_API_TOKEN;
    if (!token) throw new UsageError("--api needs --token (or TCODER_API_TOKEN)");
    return { api: createApiClient({ baseUrl: apiUrl, token }) };
  }
  const running = await readRunningStack(flags.dir);
  if (running) {
    const api = createApiClient({ baseUrl: running.apiUrl, token: running.apiToken });
    if (await api.health().catch(() => false)) return { api };
  }
  if (!embed) {
    throw new UsageError(
      `no stack is running from ${flags.dir}: start one with \`npm start\` or pass --api and --token`,
    );
  }
  const stack = await startStack(flags);
  return { api: createApiClient({ baseUrl: stack.cloud.apiUrl, token: stack.cloud.apiToken }), stack };
}

async function transcodeAll(api: ApiClient, files: string[], flags: Flags, signal: AbortSignal): Promise<number> {
  const progress = createProgress();
  const jobs = await Promise.all(
    files.map((file) =>
      transcodeFile(api, file, { progress, signal, ...(flags.preset ? { preset: flags.preset } : {}) }),
    ),
  );
  if (flags.out) {
    for (const job of jobs) {
      if (job.state !== "completed") continue;
      const copied = await copyOutputs(job, resolve(flags.out));
      progress.log(`copied ${copied} files of ${job.id} to ${join(resolve(flags.out), job.id)}`);
    }
  }
  if (flags.json) process.stdout.write(`${JSON.stringify(jobs.length === 1 ? jobs[0] : jobs, null, 2)}\n`);
  else for (const job of jobs) process.stderr.write(`\n${describeJob(job)}\n`);
  return jobs.every((job) => job.state === "completed") ? 0 : 1;
}

const stopSignals = ["SIGINT", "SIGTERM"] as const;

/**
 * Resolves on Ctrl-C / SIGTERM; the abort signal tells running work to stop. A second Ctrl-C exits
 * at once. `takeOver()` removes other signal listeners once the stack is up: Miniflare's exit hook
 * calls `process.exit(130)` on SIGINT, which would cut short the stop of machines and redis-server
 * (its `exit` listener, which kills workerd on any exit, stays).
 */
function interruption() {
  const controller = new AbortController();
  let onSignal: (signal: NodeJS.Signals) => void = () => {};
  const interrupted = new Promise<void>((resolve) => {
    onSignal = (signal) => {
      if (controller.signal.aborted) process.exit(130);
      controller.abort(new Error(signal));
      resolve();
    };
  });
  for (const signal of stopSignals) process.on(signal, onSignal);
  const takeOver = () => {
    for (const signal of stopSignals)
      for (const listener of process.listeners(signal)) if (listener !== onSignal) process.off(signal, listener);
  };
  return { signal: controller.signal, interrupted, takeOver };
}

async function up(flags: Flags): Promise<number> {
  const { signal, interrupted, takeOver } = interruption();
  const stack = await startStack(flags);
  takeOver();
  try {
    const { apiUrl, apiToken } = stack.cloud;
    process.stderr.write(
      `\ntcoder is running locally\n  api      ${apiUrl}\n  console  ${apiUrl}/  (sign in with the token)\n  token    ${apiToken}\n  state    ${stack.dir}\n\n`,
    );
    let code = 0;
    if (flags.demo) {
      const sample = flags.sample ?? (await ensureSampleVideo(join(stack.dir, "sample-1080p.mp4")));
      process.stderr.write(`transcoding ${sample}\n`);
      const api = createApiClient({ baseUrl: apiUrl, token: apiToken });
      code = await Promise.race([transcodeAll(api, [sample], flags, signal), interrupted.then(() => 130)]);
    }
    if (flags.once || signal.aborted) return code;
    process.stderr.write(`\nserving until Ctrl-C (try: npx tcoder transcode <file>)\n`);
    await interrupted;
    return code;
  } finally {
    process.stderr.write("stopping the local stack\n");
    await stack.stop();
  }
}

async function down(flags: Flags): Promise<number> {
  const running = await readRunningStack(flags.dir);
  if (!running) {
    process.stderr.write(`no stack is running from ${flags.dir}\n`);
    return 0;
  }
  process.kill(running.pid, "SIGTERM");
  for (let waited = 0; waited < 30_000; waited += 200) {
    if (!(await readRunningStack(flags.dir))) return 0;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`stack process ${running.pid} did not stop within 30 s`);
}

async function run(argv: string[]): Promise<number> {
  const { values: flags, positionals } = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  const [command, ...args] = positionals;
  if (flags.help || !command) {
    process.stdout.write(`${usage}\n`);
    return command || flags.help ? 0 : 2;
  }
  switch (command) {
    case "up":
      return up(flags);
    case "down":
      return down(flags);
    case "transcode": {
      if (args.length === 0) throw new UsageError("transcode needs at least one file");
      const { signal, takeOver } = interruption();
      const { api, stack } = await connect(flags, { embed: true });
      takeOver();
      try {
        return await transcodeAll(api, args, flags, signal);
      } finally {
        await stack?.stop();
        if (stack && !flags.out) {
          process.stderr.write(
            "\nnote: no stack was running, so a temporary one served these URLs and has stopped; the files stay in its state directory. Keep a stack up with `npm start`, or copy outputs with --out DIR.\n",
          );
        }
      }
    }
    case "status": {
      const { api } = await connect(flags, { embed: false });
      const [id] = args;
      const result = id ? await api.getJob(id) : await api.stats();
      process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
      return 0;
    }
    case "jobs": {
      const { api } = await connect(flags, { embed: false });
      const limit = intFlag("limit", flags.limit) ?? 20;
      const page = await api.listJobs({ limit, ...(flags.state ? { state: flags.state } : {}) });
      if (flags.json) process.stdout.write(`${JSON.stringify(page, null, 2)}\n`);
      else
        for (const job of page.jobs)
          process.stdout.write(
            `${job.id}  ${job.state.padEnd(15)} ${job.preset.padEnd(10)} ${job.input.filename ?? job.input.key}\n`,
          );
      return 0;
    }
    case "cancel": {
      const [id] = args;
      if (!id) throw new UsageError("cancel needs a job id");
      const { api } = await connect(flags, { embed: false });
      const job = await api.cancel(id);
      process.stdout.write(`${job.id}: ${job.state}\n`);
      return 0;
    }
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}

run(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    if (
      error instanceof UsageError ||
      (error instanceof TypeError && "code" in error && String(error.code).startsWith("ERR_PARSE_ARGS"))
    ) {
      process.stderr.write(`tcoder: ${error.message}\n\n${usage}\n`);
      process.exit(2);
    }
    if (error instanceof ApiError) {
      process.stderr.write(`tcoder: ${error.message}\n`);
      process.exit(1);
    }
    process.stderr.write(`tcoder: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);
