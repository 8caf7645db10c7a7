import { mkdir, readdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  type LoudnessReport,
  type ProbeSummary,
  parseCues,
  SUBTITLES_GROUP,
  segmentCues,
  subtitleSegmentName,
  writeVtt,
} from "@tcoder/worker/contract";
import type { PlannedAudio } from "../media/audio-plan.ts";
import { type TranscodeSpec, workLayout } from "../media/ffmpeg-args.ts";
import { fileExists, joinFiles } from "../media/files.ts";
import { encodedDurationSeconds } from "../media/inspect.ts";
import { type PlannedRendition, primaryRendition } from "../media/ladder.ts";
import { type LoudnessInput, loudnessReport, measureLoudness } from "../media/loudness.ts";
import { ffmpegQuiet, runFfmpeg } from "../media/run-ffmpeg.ts";
import type { UploadItem } from "../storage/s3.ts";
import { writeDashManifest } from "./dash.ts";
import {
  AAC_LC_CODEC,
  type MediaPlaylist,
  type MediaRendition,
  measureBandwidth,
  parseMediaPlaylist,
  videoCodecFromInit,
  videoRangeOf,
  writeMasterPlaylist,
} from "./hls-master.ts";
import { manifestKey, uploadItem } from "./layout.ts";
import type { Manifest, ManifestAudio, ManifestRendition, ManifestSubtitle } from "./manifest.ts";
import { packageKey, packagePaths } from "./manifest.ts";
import { masterEntries } from "./master-entries.ts";
import { buildSprite, type ThumbnailPlan, writeThumbnailsVtt } from "./thumbnails.ts";

export interface PackageJob {
  jobId: string;
  attempt: number;
}

/**
 * A chunked job's finalize step packages media other machines already uploaded: the media
 * playlists on disk list them with their sizes here, and only the files the package is made from
 * (init segments, the MP4's rendition and audio, the subtitles) are on disk. Stills and the
 * loudness report come from their tasks.
 */
export interface UploadedMedia {
  /** Size of each uploaded file, by its path relative to the work directory. */
  sizes: ReadonlyMap<string, number>;
  poster?: string;
  thumbnails?: { sprite: string; vtt: string; count: number };
  loudness?: LoudnessReport;
}

export interface BuiltPackage {
  manifest: Manifest;
  media: UploadItem[];
  playlists: UploadItem[];
  indexes: UploadItem[];
  manifestUpload: UploadItem;
}

/** One rendition's media playlist as encoded: its segments on disk and their measured rates. */
interface Measured {
  name: string;
  dir: string;
  playlist: MediaPlaylist;
  sizes: Map<string, number>;
  rates: ReturnType<typeof measureBandwidth>;
}

async function measure(workDir: string, name: string, uploaded?: UploadedMedia): Promise<Measured> {
  const dir = join(workDir, workLayout.hlsDir(name));
  const playlist = parseMediaPlaylist(await readFile(join(workDir, workLayout.playlist(name)), "utf8"));
  const sizes = new Map<string, number>();
  for (const uri of [...(playlist.initSegment ? [playlist.initSegment] : []), ...playlist.segments.map((s) => s.uri)])
    sizes.set(uri, uploaded?.sizes.get(join(workLayout.hlsDir(name), uri)) ?? (await stat(join(dir, uri))).size);
  return { name, dir, playlist, sizes, rates: measureBandwidth(playlist, (uri) => sizes.get(uri) ?? 0) };
}

/** Concatenates a rendition's init and media segments into one fragmented MP4 ffmpeg can read. */
const joinFragments = (m: Measured, path: string): Promise<string> =>
  joinFiles(
    [...m.sizes.keys()].map((uri) => join(m.dir, uri)),
    path,
  );

/** What the packaging steps share: the job, the upload lists they fill and the manifest they write. */
interface PackageContext {
  job: PackageJob;
  spec: TranscodeSpec;
  probe: ProbeSummary;
  signal: AbortSignal | undefined;
  uploaded: UploadedMedia | undefined;
  /** The work directory the package's files are read from and written to. */
  dir: string;
  manifest: Manifest;
  media: UploadItem[];
  playlists: UploadItem[];
  indexes: UploadItem[];
  /** The object key of a path inside this attempt's package. */
  key(path: string): string;
  /** Lists a file on disk for upload under its package path, and in the manifest's files. */
  track(into: UploadItem[], path: string, packagePath: string): Promise<void>;
  /** Told of each media file once it is final, so it can go up while packaging goes on. */
  onMedia: ((item: UploadItem) => void) | undefined;
}

/**
 * The package of an encoded job: what to upload, in the order it must be uploaded (media, then the
 * playlists listing it, then the indexes listing those; the manifest last), and the manifest.
 */
export async function buildPackage(
  job: PackageJob,
  spec: TranscodeSpec,
  thumbnailPlan: ThumbnailPlan | null,
  probe: ProbeSummary,
  signal: AbortSignal | undefined,
  uploaded?: UploadedMedia,
  onMedia?: (item: UploadItem) => void,
): Promise<BuiltPackage> {
  const ctx = packageContext(job, spec, probe, signal, uploaded, onMedia);
  // The sprite needs only the thumbnails ffmpeg wrote: it is drawn while the MP4 is remuxed.
  const thumbnails =
    thumbnailPlan && !uploaded ? buildThumbnails(ctx.dir, thumbnailPlan, probe.durationSeconds, signal) : null;
  // Settled here too, so a step failing before the sprite is awaited leaves no unhandled rejection.
  thumbnails?.catch(() => {});
  const hls = spec.preset.hls ? await packageHls(ctx) : null;
  const mp4 = !spec.preset.mp4 ? null : hls ? await remuxMp4(ctx, hls) : directMp4(ctx);
  await measureOutputLoudness(ctx, hls, mp4);
  if (mp4) await packageMp4(ctx, mp4);
  await packagePoster(ctx);
  await packageThumbnails(ctx, thumbnailPlan, thumbnails);
  return writeManifest(ctx);
}

/** An empty package of the job: its manifest lists only what the job is, until the steps add to it. */
function packageContext(
  job: PackageJob,
  spec: TranscodeSpec,
  probe: ProbeSummary,
  signal: AbortSignal | undefined,
  uploaded: UploadedMedia | undefined,
  onMedia: ((item: UploadItem) => void) | undefined,
): PackageContext {
  const { plan, preset } = spec;
  const manifest: Manifest = {
    version: 1,
    jobId: job.jobId,
    attempt: job.attempt,
    preset: preset.name,
    createdAt: new Date().toISOString(),
    durationSeconds: probe.durationSeconds,
    probe,
    files: [],
    ...(plan.skippedSubtitles.length > 0 ? { skippedSubtitles: plan.skippedSubtitles } : {}),
  };
  const key = (path: string) => packageKey(job.jobId, job.attempt, path);
  const media: UploadItem[] = [];
  return {
    job,
    spec,
    probe,
    signal,
    uploaded,
    dir: spec.workDir,
    manifest,
    media,
    playlists: [],
    indexes: [],
    key,
    onMedia,
    async track(into, path, packagePath) {
      const upload = uploadItem(path, key(packagePath));
      into.push(upload);
      manifest.files.push({ key: upload.key, sizeBytes: (await stat(path)).size, contentType: upload.contentType });
      if (into === media) onMedia?.(upload);
    },
  };
}

/** The manifest on disk, to be uploaded after everything it lists. */
async function writeManifest(ctx: PackageContext): Promise<BuiltPackage> {
  const { manifest, media, playlists, indexes } = ctx;
  const manifestPath = join(ctx.dir, "manifest.json");
  await writeFile(manifestPath, `${JSON.stringify(manifest, null, 2)}\n`);
  return { manifest, media, playlists, indexes, manifestUpload: uploadItem(manifestPath, manifestKey(ctx.job.jobId)) };
}

interface EncodedVideo {
  planned: PlannedRendition;
  measured: Measured;
  codec: string;
}

interface EncodedAudio {
  planned: PlannedAudio;
  measured: Measured;
}

/** The HLS renditions as encoded, by name, in the plan's order. */
interface EncodedHls {
  video: Map<string, EncodedVideo>;
  audio: Map<string, EncodedAudio>;
}

/**
 * HLS and DASH: each rendition's media and playlist, the subtitles cut into segments, the master
 * playlist and the DASH manifest over the same segments.
 */
async function packageHls(ctx: PackageContext): Promise<EncodedHls> {
  const { spec, probe, manifest, key } = ctx;
  const encoded = await measureHls(ctx);
  // Subtitles are cut on the primary video rendition's segment boundaries (so a player fetches
  // the cues of the segment it plays), or the first audio rendition's for audio-only sources.
  const primaryName = primaryRendition(spec.plan)?.name;
  const timeline =
    (primaryName ? encoded.video.get(primaryName)?.measured : undefined) ?? [...encoded.audio.values()][0]?.measured;
  const subtitles = await packageSubtitles(
    ctx,
    timeline?.playlist.segments.map((segment) => segment.durationSeconds) ?? [probe.durationSeconds],
  );
  const renditions = await publishVideo(ctx, encoded.video);
  const audio = await publishAudio(ctx, encoded.audio);
  await writeHlsMaster(ctx, encoded, subtitles);
  await writeDash(ctx, encoded, subtitles, timeline?.playlist.durationSeconds ?? probe.durationSeconds);
  manifest.hls = {
    master: key(packagePaths.hlsMaster),
    segmentSeconds: spec.preset.segmentSeconds,
    gopSeconds: spec.preset.gopSeconds,
    renditions,
    audio,
    subtitles,
  };
  manifest.dash = { manifest: key(packagePaths.dashManifest) };
  return encoded;
}

/** Each planned rendition's media playlist, measured, with the video's codec read from its init segment. */
async function measureHls(ctx: PackageContext): Promise<EncodedHls> {
  const { plan } = ctx.spec;
  const video = new Map<string, EncodedVideo>();
  for (const r of plan.renditions) {
    const measured = await measure(ctx.dir, r.name, ctx.uploaded);
    const init = measured.playlist.initSegment;
    const codec = init ? videoCodecFromInit(await readFile(join(measured.dir, init))) : null;
    if (!codec) throw new Error(`no H.264 or HEVC configuration in ${r.name}/${init ?? "(no init segment)"}`);
    video.set(r.name, { planned: r, measured, codec });
  }
  const audio = new Map<string, EncodedAudio>();
  for (const a of plan.audio) audio.set(a.name, { planned: a, measured: await measure(ctx.dir, a.name, ctx.uploaded) });
  return { video, audio };
}

const hlsUri = (name: string) => `${name}/playlist.m3u8`;

/** Each subtitle track as WebVTT segments on the given boundaries with their playlist, and whole for DASH. */
async function packageSubtitles(ctx: PackageContext, boundaries: number[]): Promise<ManifestSubtitle[]> {
  const { dir, key, media, playlists } = ctx;
  const subtitles: ManifestSubtitle[] = [];
  for (const sub of ctx.spec.plan.subtitles) {
    const cues = parseCues(await readFile(join(dir, workLayout.subtitle(sub.name)), "utf8"));
    const subDir = join(dir, workLayout.hlsDir(sub.name));
    await mkdir(subDir, { recursive: true });
    const segmented = segmentCues(cues, boundaries, subtitleSegmentName);
    for (const segment of segmented.segments) {
      await writeFile(join(subDir, segment.uri), segment.text);
      await ctx.track(media, join(subDir, segment.uri), `hls/${sub.name}/${segment.uri}`);
    }
    await writeFile(join(subDir, "playlist.m3u8"), segmented.playlist);
    await ctx.track(playlists, join(subDir, "playlist.m3u8"), packagePaths.renditionPlaylist(sub.name));
    const wholePath = join(dir, workLayout.subtitle(`${sub.name}-whole`));
    await writeFile(wholePath, writeVtt(cues));
    await ctx.track(media, wholePath, packagePaths.subtitleFile(sub.name));
    subtitles.push({
      name: sub.name,
      label: sub.label,
      ...(sub.language ? { language: sub.language } : {}),
      default: sub.default,
      forced: sub.forced,
      cues: cues.length,
      segments: segmented.segments.length,
      playlist: key(packagePaths.renditionPlaylist(sub.name)),
      vtt: key(packagePaths.subtitleFile(sub.name)),
    });
  }
  return subtitles;
}

/** A rendition's segments and its media playlist, listed for upload and in the manifest's files. */
async function publishRendition(ctx: PackageContext, m: Measured): Promise<void> {
  for (const [uri, sizeBytes] of m.sizes) {
    const path = join(m.dir, uri);
    const packagePath = `hls/${m.name}/${uri}`;
    // Already uploaded by the task that encoded it: listed, not sent again.
    if (ctx.uploaded) {
      const upload = uploadItem(path, ctx.key(packagePath));
      ctx.manifest.files.push({ key: upload.key, sizeBytes, contentType: upload.contentType });
    } else await ctx.track(ctx.media, path, packagePath);
  }
  await ctx.track(ctx.playlists, join(m.dir, "playlist.m3u8"), packagePaths.renditionPlaylist(m.name));
}

/** A rendition's manifest fields from its measured rates (kept in the manifest's key order by the callers). */
const ratesEntry = (m: Measured, codecs: string) => ({
  bandwidth: m.rates.bandwidth,
  averageBandwidth: m.rates.averageBandwidth,
  codecs,
});

/** A rendition's manifest fields from its media playlist: how long, how many segments, how big, where. */
const extentEntry = (ctx: PackageContext, m: Measured) => ({
  durationSeconds: m.playlist.durationSeconds,
  segments: m.playlist.segments.length,
  sizeBytes: m.rates.sizeBytes,
  playlist: ctx.key(packagePaths.renditionPlaylist(m.name)),
});

async function publishVideo(ctx: PackageContext, video: EncodedHls["video"]): Promise<ManifestRendition[]> {
  const { plan } = ctx.spec;
  const renditions: ManifestRendition[] = [];
  for (const { planned: r, measured, codec } of video.values()) {
    renditions.push({
      name: r.name,
      width: r.width,
      height: r.height,
      ...ratesEntry(measured, codec),
      ...(plan.frameRate ? { frameRate: plan.frameRate.value } : {}),
      videoRange: videoRangeOf(r.dynamicRange),
      ...extentEntry(ctx, measured),
    });
    await publishRendition(ctx, measured);
  }
  return renditions;
}

async function publishAudio(ctx: PackageContext, audio: EncodedHls["audio"]): Promise<ManifestAudio[]> {
  const renditions: ManifestAudio[] = [];
  for (const { planned: a, measured } of audio.values()) {
    renditions.push({
      name: a.name,
      label: a.label,
      ...(a.language ? { language: a.language } : {}),
      channels: a.channels,
      default: a.default,
      group: a.group,
      ...ratesEntry(measured, AAC_LC_CODEC),
      ...extentEntry(ctx, measured),
    });
    await publishRendition(ctx, measured);
  }
  return renditions;
}

/** The HLS master playlist: a variant per video rendition and audio group, the audio and subtitle media. */
async function writeHlsMaster(ctx: PackageContext, encoded: EncodedHls, subtitles: ManifestSubtitle[]): Promise<void> {
  const entries = masterEntries({
    plan: ctx.spec.plan,
    video: [...encoded.video.values()].map((v) => ({ planned: v.planned, rates: v.measured.rates, codec: v.codec })),
    audioRates: new Map([...encoded.audio.values()].map((a) => [a.planned.name, a.measured.rates])),
    uriOf: hlsUri,
    ...(subtitles.length > 0 ? { subtitlesGroup: SUBTITLES_GROUP } : {}),
  });
  const subtitleMedia = subtitles.map(
    (sub): MediaRendition => ({
      type: "SUBTITLES",
      groupId: SUBTITLES_GROUP,
      name: sub.label,
      ...(sub.language ? { language: sub.language } : {}),
      default: sub.default,
      forced: sub.forced,
      uri: hlsUri(sub.name),
    }),
  );
  const masterPath = join(ctx.dir, "hls", "master.m3u8");
  await writeFile(masterPath, writeMasterPlaylist(entries.variants, [...entries.audioMedia, ...subtitleMedia]));
  await ctx.track(ctx.indexes, masterPath, packagePaths.hlsMaster);
}

/** The DASH manifest, over the same fragmented MP4 segments and whole WebVTT subtitles. */
async function writeDash(
  ctx: PackageContext,
  encoded: EncodedHls,
  subtitles: ManifestSubtitle[],
  durationSeconds: number,
): Promise<void> {
  const { plan } = ctx.spec;
  const mpdPath = join(ctx.dir, packagePaths.dashManifest);
  await writeFile(
    mpdPath,
    writeDashManifest({
      durationSeconds,
      ...(plan.frameRate ? { frameRate: plan.frameRate.expr } : {}),
      video: [...encoded.video.values()].map((v) => ({
        rendition: v.planned,
        codec: v.codec,
        bandwidth: v.measured.rates.bandwidth,
        playlist: v.measured.playlist,
      })),
      audio: [...encoded.audio.values()].map((a) => ({
        rendition: a.planned,
        bandwidth: a.measured.rates.bandwidth,
        playlist: a.measured.playlist,
      })),
      text: subtitles.map((t) => ({
        name: t.name,
        label: t.label,
        ...(t.language ? { language: t.language } : {}),
        uri: packagePaths.subtitleFile(t.name),
      })),
    }),
  );
  await ctx.track(ctx.indexes, mpdPath, packagePaths.dashManifest);
}

/** The progressive MP4 on disk and the size of its picture. */
interface Mp4Source {
  path: string;
  width: number;
  height: number;
}

/**
 * The progressive MP4 is the primary video rendition and every audio rendition, remuxed: no
 * second encode. The source's default stream stays the default track.
 */
async function remuxMp4(ctx: PackageContext, encoded: EncodedHls): Promise<Mp4Source> {
  const { dir, signal } = ctx;
  const primary = primaryRendition(ctx.spec.plan);
  const inputs: string[] = [];
  const maps: string[] = [];
  const primaryMeasured = primary ? encoded.video.get(primary.name)?.measured : undefined;
  if (primaryMeasured) {
    inputs.push("-i", await joinFragments(primaryMeasured, join(dir, "fragmented-video.mp4")));
    maps.push("-map", "0:v");
  }
  const audioInputs = [...encoded.audio.values()];
  for (const [i, { measured }] of audioInputs.entries()) {
    inputs.push("-i", await joinFragments(measured, join(dir, `fragmented-audio-${i}.mp4`)));
    maps.push("-map", `${inputs.length / 2 - 1}:a`);
  }
  const dispositions = audioInputs.flatMap(({ planned }, i) => [
    `-disposition:a:${i}`,
    planned.default && planned.group === "stereo" ? "default" : "0",
  ]);
  const remuxed = join(dir, packagePaths.mp4);
  await runFfmpeg(
    [...ffmpegQuiet, ...inputs, ...maps, "-c", "copy", ...dispositions, "-movflags", "+faststart", remuxed],
    signal ? { signal } : {},
  );
  return { path: remuxed, width: primary?.width ?? 0, height: primary?.height ?? 0 };
}

/** Without HLS, ffmpeg encoded the MP4 directly. */
function directMp4(ctx: PackageContext): Mp4Source {
  const top = primaryRendition(ctx.spec.plan);
  return { path: join(ctx.dir, workLayout.directMp4), width: top?.width ?? 0, height: top?.height ?? 0 };
}

async function packageMp4(ctx: PackageContext, mp4: Mp4Source): Promise<void> {
  // Tracked first: the MP4 goes up while its duration is read.
  await ctx.track(ctx.media, mp4.path, packagePaths.mp4);
  const mp4Duration = await encodedDurationSeconds(mp4.path);
  ctx.manifest.mp4 = {
    key: ctx.key(packagePaths.mp4),
    width: mp4.width,
    height: mp4.height,
    durationSeconds: mp4Duration ?? ctx.probe.durationSeconds,
    sizeBytes: (await stat(mp4.path)).size,
  };
}

/** The loudness record: what the listener gets, the encoded renditions measured like their sources were. */
async function measureOutputLoudness(
  ctx: PackageContext,
  hls: EncodedHls | null,
  mp4: Mp4Source | null,
): Promise<void> {
  const { spec, uploaded, manifest } = ctx;
  if (uploaded?.loudness) {
    manifest.loudness = uploaded.loudness;
    return;
  }
  if (!spec.loudness) return;
  const encodedAudio = await encodedAudioOf(ctx, hls, mp4);
  const output = await measureLoudness(encodedAudio, spec.loudness.targetLufs, ctx.signal);
  manifest.loudness = loudnessReport(
    spec.loudness,
    encodedAudio.flatMap((a, i) => (output[i] ? [{ name: a.name, channels: a.channels, output: output[i] }] : [])),
  );
}

/** Each encoded audio rendition as an ffmpeg input: its HLS fragments joined, or a stream of the direct MP4. */
async function encodedAudioOf(
  ctx: PackageContext,
  hls: EncodedHls | null,
  mp4: Mp4Source | null,
): Promise<(LoudnessInput & { name: string })[]> {
  if (hls) {
    // A chunked job's audio fragments are not on disk; its audio task measured them.
    if (ctx.uploaded) return [];
    const inputs: (LoudnessInput & { name: string })[] = [];
    for (const { planned, measured } of hls.audio.values())
      inputs.push({
        name: planned.name,
        path: await joinFragments(measured, join(ctx.dir, `loudness-${planned.name}.mp4`)),
        stream: "0:a:0",
        channels: planned.channels,
      });
    return inputs;
  }
  if (!mp4) return [];
  return ctx.spec.plan.audio.map((a, i) => ({
    name: a.name,
    path: mp4.path,
    stream: `0:a:${i}`,
    channels: a.channels,
  }));
}

/** The poster ffmpeg wrote, or the one a chunked job's stills task uploaded. */
async function packagePoster(ctx: PackageContext): Promise<void> {
  const { uploaded, manifest, key } = ctx;
  const top = primaryRendition(ctx.spec.plan);
  if (!top) return;
  if (uploaded) {
    if (uploaded.poster) manifest.poster = { key: key(uploaded.poster), width: top.width, height: top.height };
    return;
  }
  const posterPath = join(ctx.dir, workLayout.poster);
  if (!ctx.spec.preset.poster || !(await fileExists(posterPath))) return;
  await ctx.track(ctx.media, posterPath, packagePaths.poster);
  manifest.poster = { key: key(packagePaths.poster), width: top.width, height: top.height };
}

/** The thumbnails sprite and its cue file, or the ones a chunked job's stills task uploaded. */
async function packageThumbnails(
  ctx: PackageContext,
  plan: ThumbnailPlan | null,
  built: ReturnType<typeof buildThumbnails> | null,
): Promise<void> {
  const { uploaded, manifest, key } = ctx;
  if (!plan) return;
  if (uploaded) {
    if (uploaded.thumbnails)
      manifest.thumbnails = thumbnailsEntry(
        key(uploaded.thumbnails.vtt),
        key(uploaded.thumbnails.sprite),
        plan,
        uploaded.thumbnails.count,
      );
    return;
  }
  const thumbnails = await built;
  if (!thumbnails) return;
  await ctx.track(ctx.media, thumbnails.spritePath, packagePaths.thumbnailsSprite);
  await ctx.track(ctx.playlists, thumbnails.vttPath, packagePaths.thumbnailsVtt);
  manifest.thumbnails = thumbnailsEntry(
    key(packagePaths.thumbnailsVtt),
    key(packagePaths.thumbnailsSprite),
    plan,
    thumbnails.count,
  );
}

/** The sprite and cue file of the thumbnails ffmpeg wrote into the work directory; null when it wrote none. */
export async function buildThumbnails(
  dir: string,
  plan: ThumbnailPlan,
  durationSeconds: number,
  signal: AbortSignal | undefined,
): Promise<{ spritePath: string; vttPath: string; count: number } | null> {
  const thumbs = (await readdir(join(dir, workLayout.thumbsDir))).filter((f) => f.endsWith(".jpg")).sort();
  if (thumbs.length === 0) return null;
  const spritePath = join(dir, "sprite.jpg");
  await buildSprite(join(dir, workLayout.thumbPattern), thumbs.length, plan, spritePath, signal);
  const vttPath = join(dir, "thumbnails.vtt");
  await writeFile(vttPath, writeThumbnailsVtt(plan, thumbs.length, durationSeconds, "sprite.jpg"));
  return { spritePath, vttPath, count: thumbs.length };
}

const thumbnailsEntry = (vtt: string, sprite: string, plan: ThumbnailPlan, count: number) => ({
  vtt,
  sprite,
  intervalSeconds: plan.intervalSeconds,
  count,
  width: plan.width,
  height: plan.height,
  columns: Math.min(plan.columns, count),
});
