/**
 * What the CLI checks before it starts or calls anything. Each check names the argument that is
 * wrong and why, so a typo costs one line of output instead of a local stack started for nothing.
 * Commands share these checks; a new command that takes files, a preset or an API address uses
 * them too rather than finding out from a failure halfway through.
 */
import { open, readFile, stat } from "node:fs/promises";
import {
  isPresetName,
  type JobState,
  jobStates,
  LANGUAGE_TAG,
  LOUDNESS_TARGET_RANGE_LUFS,
  LoudnessSetting,
  loudnessTargetsLufs,
  MAX_CAPTIONS_BYTES,
  MAX_LANGUAGE_TAG_LENGTH,
  type PresetName,
  presetNames,
  presets,
  readCaptions,
} from "@tcoder/worker/contract";

/** A wrong argument; the message says which and why. The CLI prints it and exits 2. */
export class ArgumentError extends Error {
  override readonly name: string = "ArgumentError";
}

/** A command line that does not parse (unknown command, missing operand): the usage follows it. */
export class UsageError extends ArgumentError {
  override readonly name: string = "UsageError";
}

/** A flag that must be a positive whole number (`--port`, `--limit`, …), or undefined when absent. */
export function positiveIntFlag(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0)
    throw new ArgumentError(`--${name} must be a positive whole number, got "${value}"`);
  return n;
}

/** The preset a job should use; refused here with the valid names rather than after an upload. */
export function presetFlag(value: string): PresetName {
  if (isPresetName(value)) return value;
  throw new ArgumentError(`unknown preset "${value}"; the presets are ${presetNames.join(", ")}`);
}

export function jobStateFlag(value: string): JobState {
  const state = jobStates.find((s) => s === value);
  if (state) return state;
  throw new ArgumentError(`--state "${value}" is not a job state; the states are ${jobStates.join(", ")}`);
}

/**
 * `--loudness`: the integrated loudness to normalize audio to, in LUFS (-23 EBU R128, -16
 * streaming, or any level the API takes), or `broadcast` / `streaming` for those two.
 */
export function loudnessFlag(value: string): LoudnessSetting {
  const named = Object.hasOwn(loudnessTargetsLufs, value)
    ? loudnessTargetsLufs[value as keyof typeof loudnessTargetsLufs]
    : undefined;
  // Number("") is 0 and Number("0x10") 16: only a plain decimal is a loudness.
  const targetLufs = named ?? (/^[-+]?\d+(\.\d+)?$/.test(value) ? Number(value) : Number.NaN);
  if (LoudnessSetting.safeParse({ targetLufs }).success) return { targetLufs };
  const { min, max } = LOUDNESS_TARGET_RANGE_LUFS;
  throw new ArgumentError(
    `--loudness must be a loudness in LUFS from ${min} to ${max} (-23 is EBU R128, -16 streaming) or the word broadcast or streaming, got "${value}"`,
  );
}

/** A captions file checked and read: what `POST /v1/jobs/{id}/captions` will be sent. */
export interface CaptionsFile {
  path: string;
  language: string;
  text: string;
}

/**
 * `--captions FILE --captions-language TAG`, given in pairs (the first language goes with the first
 * file, and so on). Every file must be one the API takes (UTF-8 WebVTT or SubRip with a cue, at
 * most MAX_CAPTIONS_BYTES), every language a BCP 47 tag, and the preset (when named) one with an
 * HLS package for them to join; checked, and the files read, before anything starts.
 */
export async function captionsFlags(
  paths: readonly string[],
  languages: readonly string[],
  preset: PresetName | undefined,
): Promise<CaptionsFile[]> {
  if (languages.length < paths.length)
    throw new ArgumentError(
      `--captions ${paths[languages.length]} needs a --captions-language (one for each --captions, in the same order)`,
    );
  if (languages.length > paths.length)
    throw new ArgumentError(`--captions-language ${languages[paths.length]} has no --captions file to go with`);
  if (paths.length > 0 && preset && !presets[preset].hls)
    throw new ArgumentError(`--captions need a preset with an HLS package; ${preset} has none`);
  for (const language of languages)
    if (language.length > MAX_LANGUAGE_TAG_LENGTH || !LANGUAGE_TAG.test(language))
      throw new ArgumentError(
        `--captions-language "${language}" is not a BCP 47 language tag (such as en, pt-BR or yue-Hant)`,
      );
  if (new Set(languages.map((l) => l.toLowerCase())).size < languages.length)
    throw new ArgumentError("--captions-language names a language twice; a job has one set of captions per language");
  const files: CaptionsFile[] = [];
  for (const [i, path] of paths.entries()) {
    const [file] = await inputFiles([path]).catch((error: unknown) => {
      throw error instanceof ArgumentError ? new ArgumentError(`--captions ${error.message}`) : error;
    });
    if (!file) continue;
    if (file.size > MAX_CAPTIONS_BYTES)
      throw new ArgumentError(
        `--captions ${path}: is ${file.size} bytes, over the captions limit of ${MAX_CAPTIONS_BYTES} bytes`,
      );
    const bytes = await readFile(path);
    const read = readCaptions(bytes);
    if ("problem" in read) throw new ArgumentError(`--captions ${path}: ${read.problem}`);
    files.push({ path, language: languages[i] as string, text: new TextDecoder().decode(bytes) });
  }
  return files;
}

/** An http(s) address such as `--api`; `flag` is how the message names it. */
export function httpUrlFlag(flag: string, value: string): URL {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ArgumentError(`${flag} "${value}" is not a URL (expected something like https://tcoder.example.com)`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:")
    throw new ArgumentError(`${flag} "${value}" must be an http:// or https:// address`);
  return url;
}

/** A directory outputs go to: created when missing, so only an existing non-directory is wrong. */
export async function outputDirFlag(flag: string, path: string): Promise<string> {
  const found = await stat(path).catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT") return null;
    throw new ArgumentError(`${flag} ${path}: ${fileSystemReason(error)}`);
  });
  if (found && !found.isDirectory()) throw new ArgumentError(`${flag} ${path}: exists and is not a directory`);
  return path;
}

export interface InputFile {
  path: string;
  size: number;
}

/**
 * Every file to upload must exist, be a readable regular file, not be empty and (when the limit is
 * known) fit the upload limit. All of them are checked, and every wrong one is named, before the
 * first is sent.
 */
export async function inputFiles(paths: readonly string[], limits: { maxBytes?: number } = {}): Promise<InputFile[]> {
  const checked = await Promise.all(paths.map((path) => inputFile(path, limits.maxBytes)));
  const problems = checked.filter((c) => "problem" in c).map((c) => `${c.path}: ${c.problem}`);
  if (problems.length === 1) throw new ArgumentError(problems[0]);
  if (problems.length > 1)
    throw new ArgumentError(`${problems.length} of ${paths.length} files cannot be sent:\n  ${problems.join("\n  ")}`);
  return checked.filter((c): c is InputFile => !("problem" in c));
}

async function inputFile(
  path: string,
  maxBytes: number | undefined,
): Promise<InputFile | { path: string; problem: string }> {
  const refuse = (problem: string) => ({ path, problem });
  let size: number;
  try {
    const found = await stat(path);
    if (found.isDirectory()) return refuse("is a directory; name the media files in it");
    if (!found.isFile()) return refuse("is not a regular file (a pipe, socket or device cannot be uploaded)");
    size = found.size;
    // stat says nothing about permission to read; opening does (a regular file opens without blocking).
    await (await open(path, "r")).close();
  } catch (error) {
    return refuse(fileSystemReason(error as NodeJS.ErrnoException));
  }
  if (size === 0) return refuse("is empty");
  if (maxBytes !== undefined && size > maxBytes)
    return refuse(`is ${size} bytes (${gib(size)}), over the upload limit of ${maxBytes} bytes (${gib(maxBytes)})`);
  return { path, size };
}

function fileSystemReason(error: NodeJS.ErrnoException): string {
  switch (error.code) {
    case "ENOENT":
      return "no such file";
    case "ENOTDIR":
      return "no such file (a part of the path is not a directory)";
    case "EACCES":
    case "EPERM":
      return "cannot be read: permission denied";
    case "ELOOP":
      return "cannot be read: too many levels of symbolic links";
    case "ENAMETOOLONG":
      return "the name is too long";
    default:
      return `cannot be read: ${error.message}`;
  }
}

const gib = (bytes: number) => `${(bytes / 1024 ** 3).toFixed(bytes < 1024 ** 3 ? 3 : 1)} GiB`;
