/**
 * Captions on a finished job: the API cuts a WebVTT or SubRip file on the package's own segment
 * boundaries (read from a published media playlist), writes the segments, their playlist and the
 * whole file next to the machine's renditions, and republishes the master playlist with every
 * subtitle rendition the job's outputs list. Written in the order players may reference them:
 * segments, playlists, then the master. Removing does the reverse.
 */
import type { Settings } from "../bindings.ts";
import {
  type Cue,
  cacheControlFor,
  contentTypeFor,
  languageName,
  type MediaRendition,
  type OutputKeys,
  type PlaybackPolicy,
  packageBucketVar,
  packagePaths,
  parseMediaPlaylist,
  SUBTITLES_GROUP,
  segmentCues,
  subtitleSegmentName,
  withSubtitleRenditions,
  writeVtt,
} from "../contract/index.ts";
import { deleteKeyBatch } from "../storage/objects.ts";
import { getObjectText, putObject, type S3Settings } from "../storage/s3.ts";

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
}

function publishedPackage(settings: PackageSettings, playback: PlaybackPolicy, outputs: OutputKeys): Published {
  const master = outputs.hlsMaster;
  if (!master?.endsWith(packagePaths.hlsMaster)) throw new PackageError("the job has no HLS package");
  return {
    bucket: settings[packageBucketVar(playback)],
    attemptPrefix: master.slice(0, -packagePaths.hlsMaster.length),
    master,
  };
}

const put = (settings: S3Settings, bucket: string, key: string, body: string) =>
  putObject(settings, bucket, key, body, { contentType: contentTypeFor(key), cacheControl: cacheControlFor(key) });

/** The master playlist with exactly the subtitle renditions `outputs` lists. */
async function republishMaster(settings: S3Settings, pkg: Published, subtitles: NonNullable<OutputKeys["subtitles"]>) {
  const master = await getObjectText(settings, pkg.bucket, pkg.master);
  if (master === null) throw new PackageError(`${pkg.master} is missing`);
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
  await put(settings, pkg.bucket, pkg.master, withSubtitleRenditions(master, renditions));
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
  for (const segment of segmented.segments)
    await put(settings, pkg.bucket, key(packagePaths.renditionFile(name, segment.uri)), segment.text);
  await put(settings, pkg.bucket, key(packagePaths.renditionPlaylist(name)), segmented.playlist);
  await put(settings, pkg.bucket, key(packagePaths.subtitleFile(name)), writeVtt(captions.cues));

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
  await republishMaster(settings, pkg, subtitles);
  return { ...job.outputs, subtitles };
}

/**
 * Takes the captions added for `language` out of a completed job's package: the master first (so
 * no player is sent to them), then their files. Null when the job has none for that language.
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
  await republishMaster(settings, pkg, subtitles);
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
