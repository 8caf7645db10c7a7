/**
 * Captions on a finished job: the API cuts a WebVTT or SubRip file on the package's own segment
 * boundaries (read from a published media playlist), writes the segments, their playlist and the
 * whole file next to the machine's renditions, and republishes the master playlist, the DASH
 * manifest and `manifest.json` with every subtitle rendition the job's outputs list. Written in the
 * order players may reference them: segments, playlists, the master and the MPD, then the manifest
 * (last, as a machine writes it). Removing does the reverse.
 */
import type { Settings } from "../bindings.ts";
import {
  type Cue,
  cacheControlFor,
  contentTypeFor,
  DashManifestError,
  languageName,
  type Manifest,
  type ManifestSubtitle,
  type MediaRendition,
  type OutputKeys,
  type PlaybackPolicy,
  packageBucketVar,
  packagePaths,
  parseMediaPlaylist,
  SUBTITLES_GROUP,
  segmentCues,
  subtitleSegmentName,
  withDashTextSets,
  withSubtitleRenditions,
  writeVtt,
} from "../contract/index.ts";
import { deleteKeyBatch } from "../storage/objects.ts";
import { getObjectText, putObject, type S3Settings } from "../storage/s3.ts";

const encoder = new TextEncoder();

type PackageSettings = S3Settings & Pick<Settings, "OUTPUT_BUCKET" | "INPUT_BUCKET">;

/** A caption rendition's name: one per language, apart from the source's own `subs-<n>`. */
export const captionsRenditionName = (language: string) => `captions-${language.toLowerCase()}`;

/** Thrown when the published package is not what its job says (a file missing): nothing was changed. */
export class PackageError extends Error {
  override readonly name = "PackageError";
}

interface Published {
  bucket: string;
  /** `outputs/<jobId>/<attempt>/`: where the master playlist and every rendition live. */
  attemptPrefix: string;
  master: string;
  /** The DASH manifest, when the package has one. */
  mpd?: string;
  /** `outputs/<jobId>/manifest.json`. */
  manifest: string;
}

function publishedPackage(settings: PackageSettings, playback: PlaybackPolicy, outputs: OutputKeys): Published {
  const master = outputs.hlsMaster;
  if (!master?.endsWith(packagePaths.hlsMaster)) throw new PackageError("the job has no HLS package");
  return {
    bucket: settings[packageBucketVar(playback)],
    attemptPrefix: master.slice(0, -packagePaths.hlsMaster.length),
    master,
    ...(outputs.dashManifest ? { mpd: outputs.dashManifest } : {}),
    manifest: outputs.manifest,
  };
}

const put = (settings: S3Settings, bucket: string, key: string, body: string) =>
  putObject(settings, bucket, key, body, { contentType: contentTypeFor(key), cacheControl: cacheControlFor(key) });

type Subtitle = NonNullable<OutputKeys["subtitles"]>[number];

const readPublished = async (settings: S3Settings, pkg: Published, key: string) => {
  const text = await getObjectText(settings, pkg.bucket, key);
  if (text === null) throw new PackageError(`${key} is missing`);
  return text;
};

/** The files of subtitle rendition `name`: its segments and playlist, and its whole WebVTT file. */
const renditionFiles = (pkg: Published, name: string) => {
  const folder = `${pkg.attemptPrefix}${packagePaths.renditionFile(name, "")}`;
  const whole = `${pkg.attemptPrefix}${packagePaths.subtitleFile(name)}`;
  return (key: string) => key.startsWith(folder) || key === whole;
};

/** What changes about one subtitle rendition: its description (none once removed) and its files. */
interface RenditionChange {
  name: string;
  description?: ManifestSubtitle;
  files: Manifest["files"];
}

function masterWith(master: string, pkg: Published, subtitles: readonly Subtitle[]): string {
  const renditions: MediaRendition[] = subtitles.map((s) => ({
    type: "SUBTITLES",
    groupId: SUBTITLES_GROUP,
    name: s.label,
    ...(s.language ? { language: s.language } : {}),
    default: s.default,
    forced: s.forced,
    // Relative to the master: hls/<name>/playlist.m3u8 next to hls/master.m3u8.
    uri: s.playlist.slice(`${pkg.attemptPrefix}hls/`.length),
  }));
  return withSubtitleRenditions(master, renditions);
}

function mpdWith(mpd: string, pkg: Published, subtitles: readonly Subtitle[]): string {
  const texts = subtitles.map((s) => ({
    name: s.name,
    label: s.label,
    ...(s.language ? { language: s.language } : {}),
    // Relative to the MPD, which sits at the attempt's root.
    uri: s.vtt.slice(pkg.attemptPrefix.length),
  }));
  try {
    return withDashTextSets(mpd, texts);
  } catch (error) {
    if (error instanceof DashManifestError) throw new PackageError(`${pkg.mpd}: ${error.message}`);
    throw error;
  }
}

function manifestWith(text: string, pkg: Published, subtitles: readonly Subtitle[], changed: RenditionChange): string {
  let manifest: Manifest;
  try {
    manifest = JSON.parse(text) as Manifest;
  } catch {
    throw new PackageError(`${pkg.manifest} is not JSON`);
  }
  if (manifest.version !== 1 || !manifest.hls || !Array.isArray(manifest.files))
    throw new PackageError(`${pkg.manifest} does not describe an HLS package`);
  const described = new Map(manifest.hls.subtitles.map((s) => [s.name, s]));
  if (changed.description) described.set(changed.name, changed.description);
  const ofChanged = renditionFiles(pkg, changed.name);
  const updated: Manifest = {
    ...manifest,
    hls: { ...manifest.hls, subtitles: subtitles.flatMap((s) => described.get(s.name) ?? []) },
    files: [...manifest.files.filter((f) => !ofChanged(f.key)), ...changed.files],
  };
  return `${JSON.stringify(updated, null, 2)}\n`;
}

/**
 * Republishes the master playlist, the DASH manifest (when the package has one) and manifest.json
 * with exactly the subtitle renditions `subtitles` lists. All three are read and rewritten before
 * the first is stored, so a package that is not as its job says is left untouched.
 */
async function republishIndexes(
  settings: S3Settings,
  pkg: Published,
  subtitles: readonly Subtitle[],
  changed: RenditionChange,
) {
  const [master, mpd, manifest] = await Promise.all([
    readPublished(settings, pkg, pkg.master),
    pkg.mpd ? readPublished(settings, pkg, pkg.mpd) : null,
    readPublished(settings, pkg, pkg.manifest),
  ]);
  const writes: [string, string][] = [[pkg.master, masterWith(master, pkg, subtitles)]];
  if (pkg.mpd && mpd !== null) writes.push([pkg.mpd, mpdWith(mpd, pkg, subtitles)]);
  // Last, as a machine writes it: what it lists is all in place by then.
  writes.push([pkg.manifest, manifestWith(manifest, pkg, subtitles, changed)]);
  for (const [key, body] of writes) await put(settings, pkg.bucket, key, body);
}

export interface NewCaptions {
  language: string;
  label: string;
  cues: readonly Cue[];
}

/** Publishes `captions` into a completed job's package; returns the outputs that list it (replacing that language's earlier captions). */
export async function addCaptions(
  settings: PackageSettings,
  job: { playback: PlaybackPolicy; outputs: OutputKeys },
  captions: NewCaptions,
): Promise<OutputKeys> {
  const pkg = publishedPackage(settings, job.playback, job.outputs);
  // Every rendition shares the segment boundaries (fixed GOPs); audio-only packages have only audio.
  const timeline = job.outputs.renditions[0]?.playlist ?? job.outputs.audio?.[0]?.playlist;
  const timelineText = timeline ? await getObjectText(settings, pkg.bucket, timeline) : null;
  if (!timeline || timelineText === null) throw new PackageError("the package has no media playlist to align to");
  const durations = parseMediaPlaylist(timelineText).segments.map((s) => s.durationSeconds);

  const name = captionsRenditionName(captions.language);
  const key = (path: string) => `${pkg.attemptPrefix}${path}`;
  const segmented = segmentCues(captions.cues, durations, subtitleSegmentName);
  const files: Manifest["files"] = [];
  const write = async (path: string, body: string) => {
    await put(settings, pkg.bucket, key(path), body);
    files.push({ key: key(path), sizeBytes: encoder.encode(body).byteLength, contentType: contentTypeFor(path) });
  };
  for (const segment of segmented.segments) await write(packagePaths.renditionFile(name, segment.uri), segment.text);
  await write(packagePaths.renditionPlaylist(name), segmented.playlist);
  await write(packagePaths.subtitleFile(name), writeVtt(captions.cues));

  const rendition = {
    name,
    label: captions.label,
    language: captions.language,
    default: false,
    forced: false,
    playlist: key(packagePaths.renditionPlaylist(name)),
    vtt: key(packagePaths.subtitleFile(name)),
  };
  const subtitles = [...(job.outputs.subtitles ?? []).filter((s) => s.name !== name), rendition];
  await republishIndexes(settings, pkg, subtitles, {
    name,
    description: { ...rendition, cues: captions.cues.length, segments: segmented.segments.length },
    files,
  });
  return { ...job.outputs, subtitles };
}

/**
 * Takes the captions added for `language` out of a completed job's package: the master, the MPD
 * and the manifest first (so no player is sent to them), then their files. Null when the job has none for that language.
 */
export async function removeCaptions(
  settings: PackageSettings,
  job: { playback: PlaybackPolicy; outputs: OutputKeys },
  language: string,
): Promise<OutputKeys | null> {
  const pkg = publishedPackage(settings, job.playback, job.outputs);
  const name = captionsRenditionName(language);
  const removed = job.outputs.subtitles?.find((s) => s.name === name);
  if (!removed) return null;
  const subtitles = (job.outputs.subtitles ?? []).filter((s) => s !== removed);
  const playlist = await getObjectText(settings, pkg.bucket, removed.playlist);
  await republishIndexes(settings, pkg, subtitles, { name, files: [] });
  const segments = playlist === null ? [] : parseMediaPlaylist(playlist).segments;
  await deleteKeyBatch(settings, pkg.bucket, [
    ...segments.map((s) => `${pkg.attemptPrefix}${packagePaths.renditionFile(name, s.uri)}`),
    removed.playlist,
    removed.vtt,
  ]);
  return { ...job.outputs, subtitles };
}

/** The label players show when the client names none: the language's English name, else the tag. */
export const captionsLabel = (language: string, name: string | undefined) => name ?? languageName(language) ?? language;
