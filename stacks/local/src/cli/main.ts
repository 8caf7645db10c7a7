/**
 * `tcoder`: run the pipeline locally and talk to any tcoder API.
 *
 *   tcoder up [--demo] [--once] [--fresh]        the local cloud (npm start = up --demo)
 *   tcoder transcode <file…> [--url URL…] [--preset] [--loudness] [--captions …] [--out] [--json]
 *   tcoder status [jobId] | jobs | cancel <jobId> | delete <jobId> | down
 *
 * Commands other than `up` talk to --api/--token, else TCODER_API_URL/TCODER_API_TOKEN, else the
 * stack running from --dir; `transcode` starts an embedded stack for its duration when none runs.
 */
import { join, resolve } from "node:path";
import { inspect, parseArgs } from "node:util";
import { defaultVars } from "@tcoder/worker/bindings";
import type { LoudnessSetting } from "@tcoder/worker/contract";
import type { LocalStack, StackLogger, StartLocalStackOptions } from "../stack.ts";
import { type ApiClient, ApiError, createApiClient, explainFailure } from "./api-client.ts";
import {
  ArgumentError,
  type CaptionsFile,
  captionsFlags,
  httpUrlFlag,
  inputFiles,
  jobStateFlag,
  loudnessFlag,
  outputDirFlag,
  positiveIntFlag,
  presetFlag,
  UsageError,
} from "./arguments.ts";
import { createProgress } from "./progress.ts";
import { ensureSampleVideo } from "./sample.ts";
import { copyOutputs, describeJob, transcodeFile, transcodeUrl } from "./transcode.ts";
import { UnreachableError } from "./unreachable.ts";

const usage = `usage: tcoder <command> [options]

commands:
  up [--demo] [--once] [--fresh] [--sample FILE]   start the local stack (and transcode a sample with --demo)
  transcode <file...> [--url URL...] [--preset NAME] [--loudness LUFS] [--out DIR] [--json]
            [--captions FILE --captions-language TAG]...
                                                   (--url: the machine downloads the source itself;
                                                   --loudness: -23 EBU R128, -16 streaming, or
                                                   broadcast/streaming; --captions: a WebVTT or
                                                   SubRip file added to each job once it completes,
                                                   each with its BCP 47 language, e.g. en or pt-BR)
  status [jobId]                                   a job, or the pipeline's stats
  jobs [--state STATE] [--limit N]                 recent jobs
  cancel <jobId>
  delete <jobId>                                   remove a job's source and outputs (a tombstone stays)
  down                                             stop the stack running from --dir

options:
  --dir DIR           local stack state (default .tcoder)
  --port N            local API port (default: a free port; env TCODER_PORT)
  --max-machines N    machine cap of the local stack
  --runner KIND       what runs the local machines: process (default) or container (the image
                      machine-image/Dockerfile builds, as podman containers; npm run image:build)
  --api URL --token T a deployed stack (env TCODER_API_URL, TCODER_API_TOKEN)
  --verbose           more logs, and the stack trace of any failure

exit status: 0 done, 1 a job failed or an API refused or could not be reached, 2 a wrong argument
(checked before anything starts), 130 interrupted`;

const options = {
  demo: { type: "boolean" },
  once: { type: "boolean" },
  fresh: { type: "boolean" },
  sample: { type: "string" },
  preset: { type: "string" },
  url: { type: "string", multiple: true },
  loudness: { type: "string" },
  captions: { type: "string", multiple: true },
  "captions-language": { type: "string", multiple: true },
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

/**
 * The stack the CLI starts runs on the worker's defaults (it overrides no limit), so a file the
 * local API would refuse is refused here before anything starts. A deployed API's limit is its own:
 * with --api the API says so itself, before any bytes are sent.
 */
const localUploadLimit = Number(defaultVars.MAX_UPLOAD_BYTES);

/**
 * The local stack's module brings Miniflare and the AWS SDK, most of the CLI's start-up time. Only
 * commands that use a local stack load it, so a refused argument or an --api command answers sooner.
 */
const localStack = () => import("../stack.ts");

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

/** How to start a local stack, every flag checked before anything starts. */
async function localStackOptions(flags: Flags): Promise<StartLocalStackOptions> {
  const port = positiveIntFlag("port", flags.port ?? process.env.TCODER_PORT);
  const maxMachines = positiveIntFlag("max-machines", flags["max-machines"]);
  const { runnerKinds } = await localStack();
  const runner = runnerKinds.find((kind) => kind === (flags.runner ?? "process"));
  if (!runner) throw new UsageError(`--runner must be ${runnerKinds.join(" or ")}, got "${flags.runner}"`);
  return {
    dir: flags.dir,
    fresh: flags.fresh ?? false,
    runner,
    log: stackLogger(flags.verbose ?? false),
    ...(port === undefined ? {} : { port }),
    ...(maxMachines === undefined ? {} : { maxMachines }),
    ...(flags.verbose ? { vars: { LOG_LEVEL: "debug" } } : {}),
  };
}

/** The API commands talk to: one named by --api/--token (or the environment), else the local stack in --dir. */
type Target = { kind: "api"; baseUrl: string; token: string } | { kind: "local"; dir: string };

function targetOf(flags: Flags): Target {
  const apiUrl = flags.api ?? process.env.TCODER_API_URL;
  if (!apiUrl) return { kind: "local", dir: flags.dir };
  const url = httpUrlFlag(flags.api === undefined ? "TCODER_API_URL" : "--api", apiUrl);
  const token = flags.token ?? process.env.TCODER_API_TOKEN;
  if (!token) throw new UsageError("--api needs --token (or TCODER_API_TOKEN)");
  return { kind: "api", baseUrl: url.href, token };
}

/**
 * A client for the target, and the embedded stack started for it (if any) to stop afterwards.
 * Only `embed` (options already checked) lets it start one when no stack runs from --dir.
 */
async function connect(
  target: Target,
  embed?: StartLocalStackOptions,
): Promise<{ api: ApiClient; stack?: LocalStack }> {
  if (target.kind === "api") return { api: createApiClient(target) };
  const { readRunningStack, startLocalStack } = await localStack();
  const running = await readRunningStack(target.dir);
  if (running) {
    const api = createApiClient({ baseUrl: running.apiUrl, token: running.apiToken });
    if (await api.health()) return { api };
  }
  if (!embed) {
    throw new ArgumentError(
      `no stack is running from ${target.dir}: start one with \`npm start\` or pass --api and --token`,
    );
  }
  const stack = await startLocalStack(embed);
  return { api: createApiClient({ baseUrl: stack.cloud.apiUrl, token: stack.cloud.apiToken }), stack };
}

/** What every job of one `transcode` (or `up --demo`) is created and finished with. */
interface JobChoices {
  preset?: string;
  loudness?: LoudnessSetting;
  captions?: CaptionsFile[];
}

async function transcodeAll(
  api: ApiClient,
  files: string[],
  flags: Flags,
  choices: JobChoices,
  signal: AbortSignal,
  urls: string[] = [],
): Promise<number> {
  const progress = createProgress();
  const options = { progress, signal, ...choices };
  const jobs = await Promise.all([
    ...files.map((file) => transcodeFile(api, file, options)),
    ...urls.map((url) => transcodeUrl(api, url, options)),
  ]);
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
  const options = await localStackOptions(flags);
  const preset = flags.preset === undefined ? undefined : presetFlag(flags.preset);
  if (flags.demo && flags.out) await outputDirFlag("--out", flags.out);
  if (flags.demo && flags.sample) await inputFiles([flags.sample], { maxBytes: localUploadLimit });
  const { startLocalStack } = await localStack();
  const { signal, interrupted, takeOver } = interruption();
  const stack = await startLocalStack(options);
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
      code = await Promise.race([
        transcodeAll(api, [sample], flags, preset ? { preset } : {}, signal),
        interrupted.then(() => 130),
      ]);
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
  const { readRunningStack } = await localStack();
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

/**
 * Flags whose value may be negative (a loudness in LUFS is). parseArgs refuses `--loudness -16` as
 * ambiguous (the value looks like a flag); a negative number after one of these is its value.
 */
const negativeValueFlags = new Set(["--loudness"]);

const joinNegativeValues = (argv: readonly string[]) =>
  argv.flatMap((arg, i) => {
    if (negativeValueFlags.has(argv[i - 1] ?? "") && /^-\d/.test(arg)) return [];
    const next = argv[i + 1] ?? "";
    return negativeValueFlags.has(arg) && /^-\d/.test(next) ? [`${arg}=${next}`] : [arg];
  });

async function run(argv: string[]): Promise<number> {
  const { values: flags, positionals } = parseArgs({
    args: joinNegativeValues(argv),
    options,
    allowPositionals: true,
    strict: true,
  });
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
      const urls = (flags.url ?? []).map((url) => httpUrlFlag("--url", url).href);
      if (args.length === 0 && urls.length === 0) throw new UsageError("transcode needs at least one file or --url");
      const target = targetOf(flags);
      const preset = flags.preset === undefined ? undefined : presetFlag(flags.preset);
      const loudness = flags.loudness === undefined ? undefined : loudnessFlag(flags.loudness);
      const captions = await captionsFlags(flags.captions ?? [], flags["captions-language"] ?? [], preset);
      const choices: JobChoices = {
        ...(preset ? { preset } : {}),
        ...(loudness ? { loudness } : {}),
        ...(captions.length > 0 ? { captions } : {}),
      };
      if (flags.out) await outputDirFlag("--out", flags.out);
      const files =
        args.length === 0 ? [] : await inputFiles(args, target.kind === "local" ? { maxBytes: localUploadLimit } : {});
      const embed = target.kind === "local" ? await localStackOptions(flags) : undefined;
      const { signal, interrupted, takeOver } = interruption();
      const { api, stack } = await connect(target, embed);
      takeOver();
      try {
        const paths = files.map((file) => file.path);
        return await Promise.race([
          transcodeAll(api, paths, flags, choices, signal, urls),
          interrupted.then(() => 130),
        ]);
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
      const { api } = await connect(targetOf(flags));
      const [id] = args;
      const result = id ? await api.getJob(id) : await api.stats();
      process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
      return 0;
    }
    case "jobs": {
      const limit = positiveIntFlag("limit", flags.limit) ?? 20;
      const state = flags.state === undefined ? undefined : jobStateFlag(flags.state);
      const { api } = await connect(targetOf(flags));
      const page = await api.listJobPage({ limit, ...(state ? { state } : {}) });
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
      const { api } = await connect(targetOf(flags));
      const job = await api.cancel(id);
      process.stdout.write(`${job.id}: ${job.state}\n`);
      return 0;
    }
    case "delete": {
      const [id] = args;
      if (!id) throw new UsageError("delete needs a job id");
      const { api } = await connect(targetOf(flags));
      await api.deleteJob(id);
      process.stdout.write(`${id}: deleted\n`);
      return 0;
    }
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}

/**
 * Expected failures (a wrong argument, an API that refused or could not be reached) read as one
 * sentence; anything else says it was unexpected. `--verbose` adds the stack and causes to either.
 */
function reportFailure(failure: unknown, verbose: boolean): number {
  const error = explainFailure(failure);
  const parseError = error instanceof TypeError && "code" in error && String(error.code).startsWith("ERR_PARSE_ARGS");
  const showUsage = parseError || error instanceof UsageError;
  const expected =
    showUsage || error instanceof ArgumentError || error instanceof ApiError || error instanceof UnreachableError;
  process.stderr.write(`tcoder: ${error instanceof Error ? error.message : String(error)}\n`);
  if (verbose) process.stderr.write(`\n${inspect(error)}\n`);
  else if (!expected)
    process.stderr.write("(an unexpected error: run again with --verbose to see where it came from)\n");
  if (showUsage) process.stderr.write(`\n${usage}\n`);
  return showUsage || error instanceof ArgumentError ? 2 : 1;
}

const argv = process.argv.slice(2);
run(argv).then(
  (code) => process.exit(code),
  (error: unknown) => process.exit(reportFailure(error, argv.includes("--verbose"))),
);
