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
import { joinFiles } from "../media/fragments.ts";
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
import { cacheControlFor, contentTypeFor, manifestKey } from "./layout.ts";
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

export async function buildPackage(
  job: PackageJob,
  spec: TranscodeSpec,
  thumbnailPlan: ThumbnailPlan | null,
  probe: ProbeSummary,
  signal: AbortSignal | undefined,
  uploaded?: UploadedMedia,
): Promise<BuiltPackage> {
  const { plan, preset, workDir: dir } = spec;
  const key = (path: string) => packageKey(job.jobId, job.attempt, path);
  const item = (path: string, objectKey: string): UploadItem => ({
    path,
    key: objectKey,
    contentType: contentTypeFor(objectKey),
    cacheControl: cacheControlFor(objectKey),
  });
  const media: UploadItem[] = [];
  const playlists: UploadItem[] = [];
  const indexes: UploadItem[] = [];
  const files: Manifest["files"] = [];
  const track = async (upload: UploadItem, into: UploadItem[]) => {
    into.push(upload);
    files.push({ key: upload.key, sizeBytes: (await stat(upload.path)).size, contentType: upload.contentType });
  };
  const publishRendition = async (m: Measured) => {
    for (const [uri, sizeBytes] of m.sizes) {
      const upload = item(join(m.dir, uri), key(`hls/${m.name}/${uri}`));
      // Already uploaded by the task that encoded it: listed, not sent again.
      if (uploaded) files.push({ key: upload.key, sizeBytes, contentType: upload.contentType });
      else await track(upload, media);
    }
    await track(item(join(m.dir, "playlist.m3u8"), key(packagePaths.renditionPlaylist(m.name))), playlists);
  };

  const manifest: Manifest = {
    version: 1,
    jobId: job.jobId,
    attempt: job.attempt,
    preset: preset.name,
    createdAt: new Date().toISOString(),
    durationSeconds: probe.durationSeconds,
    probe,
    files,
    ...(plan.skippedSubtitles.length > 0 ? { skippedSubtitles: plan.skippedSubtitles } : {}),
  };

  let mp4Source: { path: string; width: number; height: number } | null = null;
  /** Each encoded audio rendition, for the loudness record. */
  const encodedAudio: (LoudnessInput & { name: string })[] = [];
  if (preset.hls) {
    const video = new Map<string, { planned: PlannedRendition; measured: Measured; codec: string }>();
    for (const r of plan.renditions) {
      const measured = await measure(dir, r.name, uploaded);
      const init = measured.playlist.initSegment;
      const codec = init ? videoCodecFromInit(await readFile(join(measured.dir, init))) : null;
      if (!codec) throw new Error(`no H.264 or HEVC configuration in ${r.name}/${init ?? "(no init segment)"}`);
      video.set(r.name, { planned: r, measured, codec });
    }
    const audio = new Map<string, { planned: PlannedAudio; measured: Measured }>();
    for (const a of plan.audio) audio.set(a.name, { planned: a, measured: await measure(dir, a.name, uploaded) });
    if (spec.loudness && !uploaded)
      for (const { planned, measured } of audio.values())
        encodedAudio.push({
          name: planned.name,
          path: await joinFragments(measured, join(dir, `loudness-${planned.name}.mp4`)),
          stream: "0:a:0",
          channels: planned.channels,
        });

    const uriOf = (name: string) => `${name}/playlist.m3u8`;
    const mediaRenditions: MediaRendition[] = [];
    // Subtitles are cut on the primary video rendition's segment boundaries (so a player fetches
    // the cues of the segment it plays), or the first audio rendition's for audio-only sources.
    const primaryName = primaryRendition(plan)?.name;
    const timeline = (primaryName ? video.get(primaryName)?.measured : undefined) ?? [...audio.values()][0]?.measured;
    const boundaries = timeline?.playlist.segments.map((segment) => segment.durationSeconds) ?? [probe.durationSeconds];
    const subtitles: ManifestSubtitle[] = [];
    for (const sub of plan.subtitles) {
      const cues = parseCues(await readFile(join(dir, workLayout.subtitle(sub.name)), "utf8"));
      const subDir = join(dir, workLayout.hlsDir(sub.name));
      await mkdir(subDir, { recursive: true });
      const segmented = segmentCues(cues, boundaries, subtitleSegmentName);
      for (const segment of segmented.segments) {
        await writeFile(join(subDir, segment.uri), segment.text);
        await track(item(join(subDir, segment.uri), key(`hls/${sub.name}/${segment.uri}`)), media);
      }
      await writeFile(join(subDir, "playlist.m3u8"), segmented.playlist);
      await track(item(join(subDir, "playlist.m3u8"), key(packagePaths.renditionPlaylist(sub.name))), playlists);
      const wholePath = join(dir, workLayout.subtitle(`${sub.name}-whole`));
      await writeFile(wholePath, writeVtt(cues));
      await track(item(wholePath, key(packagePaths.subtitleFile(sub.name))), media);
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
      mediaRenditions.push({
        type: "SUBTITLES",
        groupId: SUBTITLES_GROUP,
        name: sub.label,
        ...(sub.language ? { language: sub.language } : {}),
        default: sub.default,
        forced: sub.forced,
        uri: uriOf(sub.name),
      });
    }

    const entries = masterEntries({
      plan,
      video: [...video.values()].map((v) => ({ planned: v.planned, rates: v.measured.rates, codec: v.codec })),
      audioRates: new Map([...audio.values()].map((a) => [a.planned.name, a.measured.rates])),
      uriOf,
      ...(subtitles.length > 0 ? { subtitlesGroup: SUBTITLES_GROUP } : {}),
    });
    const variants = entries.variants;
    mediaRenditions.unshift(...entries.audioMedia);

    const renditions: ManifestRendition[] = [];
    for (const { planned: r, measured, codec } of video.values()) {
      renditions.push({
        name: r.name,
        width: r.width,
        height: r.height,
        bandwidth: measured.rates.bandwidth,
        averageBandwidth: measured.rates.averageBandwidth,
        codecs: codec,
        ...(plan.frameRate ? { frameRate: plan.frameRate.value } : {}),
        videoRange: videoRangeOf(r.dynamicRange),
        durationSeconds: measured.playlist.durationSeconds,
        segments: measured.playlist.segments.length,
        sizeBytes: measured.rates.sizeBytes,
        playlist: key(packagePaths.renditionPlaylist(r.name)),
      });
      await publishRendition(measured);
    }
    const audioRenditions: ManifestAudio[] = [];
    for (const { planned: a, measured } of audio.values()) {
      audioRenditions.push({
        name: a.name,
        label: a.label,
        ...(a.language ? { language: a.language } : {}),
        channels: a.channels,
        default: a.default,
        group: a.group,
        bandwidth: measured.rates.bandwidth,
        averageBandwidth: measured.rates.averageBandwidth,
        codecs: AAC_LC_CODEC,
        durationSeconds: measured.playlist.durationSeconds,
        segments: measured.playlist.segments.length,
        sizeBytes: measured.rates.sizeBytes,
        playlist: key(packagePaths.renditionPlaylist(a.name)),
      });
      await publishRendition(measured);
    }

    const masterPath = join(dir, "hls", "master.m3u8");
    await writeFile(masterPath, writeMasterPlaylist(variants, mediaRenditions));
    await track(item(masterPath, key(packagePaths.hlsMaster)), indexes);
    const mpdPath = join(dir, packagePaths.dashManifest);
    await writeFile(
      mpdPath,
      writeDashManifest({
        durationSeconds: timeline?.playlist.durationSeconds ?? probe.durationSeconds,
        ...(plan.frameRate ? { frameRate: plan.frameRate.expr } : {}),
        video: [...video.values()].map((v) => ({
          rendition: v.planned,
          codec: v.codec,
          bandwidth: v.measured.rates.bandwidth,
          playlist: v.measured.playlist,
        })),
        audio: [...audio.values()].map((a) => ({
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
    await track(item(mpdPath, key(packagePaths.dashManifest)), indexes);
    manifest.hls = {
      master: key(packagePaths.hlsMaster),
      segmentSeconds: preset.segmentSeconds,
      gopSeconds: preset.gopSeconds,
      renditions,
      audio: audioRenditions,
      subtitles,
    };
    manifest.dash = { manifest: key(packagePaths.dashManifest) };

    if (preset.mp4) {
      // The progressive MP4 is the primary video rendition and every audio rendition, remuxed: no
      // second encode. The source's default stream stays the default track.
      const primary = primaryRendition(plan);
      const inputs: string[] = [];
      const maps: string[] = [];
      const primaryMeasured = primary ? video.get(primary.name)?.measured : undefined;
      if (primaryMeasured) {
        inputs.push("-i", await joinFragments(primaryMeasured, join(dir, "fragmented-video.mp4")));
        maps.push("-map", "0:v");
      }
      const audioInputs = [...audio.values()];
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
      mp4Source = { path: remuxed, width: primary?.width ?? 0, height: primary?.height ?? 0 };
    }
  } else if (preset.mp4) {
    const top = primaryRendition(plan);
    mp4Source = { path: join(dir, workLayout.directMp4), width: top?.width ?? 0, height: top?.height ?? 0 };
    for (const [i, a] of plan.audio.entries())
      encodedAudio.push({ name: a.name, path: mp4Source.path, stream: `0:a:${i}`, channels: a.channels });
  }

  if (uploaded?.loudness) manifest.loudness = uploaded.loudness;
  else if (spec.loudness) {
    // What the listener gets: the encoded renditions, measured like their sources were.
    const output = await measureLoudness(encodedAudio, spec.loudness.targetLufs, signal);
    manifest.loudness = loudnessReport(
      spec.loudness,
      encodedAudio.flatMap((a, i) => (output[i] ? [{ name: a.name, channels: a.channels, output: output[i] }] : [])),
    );
  }

  if (mp4Source) {
    const mp4Duration = await encodedDurationSeconds(mp4Source.path);
    const mp4Key = key(packagePaths.mp4);
    await track(item(mp4Source.path, mp4Key), media);
    manifest.mp4 = {
      key: mp4Key,
      width: mp4Source.width,
      height: mp4Source.height,
      durationSeconds: mp4Duration ?? probe.durationSeconds,
      sizeBytes: (await stat(mp4Source.path)).size,
    };
  }

  const posterPath = join(dir, workLayout.poster);
  const top = primaryRendition(plan);
  if (uploaded) {
    if (uploaded.poster && top) manifest.poster = { key: key(uploaded.poster), width: top.width, height: top.height };
    if (uploaded.thumbnails && thumbnailPlan)
      manifest.thumbnails = thumbnailsEntry(
        key(uploaded.thumbnails.vtt),
        key(uploaded.thumbnails.sprite),
        thumbnailPlan,
        uploaded.thumbnails.count,
      );
  } else if (preset.poster && top && (await exists(posterPath))) {
    await track(item(posterPath, key(packagePaths.poster)), media);
    manifest.poster = { key: key(packagePaths.poster), width: top.width, height: top.height };
  }

  if (thumbnailPlan && !uploaded) {
    const thumbnails = await buildThumbnails(dir, thumbnailPlan, probe.durationSeconds, signal);
    if (thumbnails) {
      await track(item(thumbnails.spritePath, key(packagePaths.thumbnailsSprite)), media);
      await track(item(thumbnails.vttPath, key(packagePaths.thumbnailsVtt)), playlists);
      manifest.thumbnails = thumbnailsEntry(
        key(packagePaths.thumbnailsVtt),
        key(packagePaths.thumbnailsSprite),
        thumbnailPlan,
        thumbnails.count,
      );
    }
  }

  const manifestPath = join(dir, "manifest.json");
  await writeFile(manifestPath, `${JSON.stringify(manifest, null, 2)}\n`);
  const manifestUpload = item(manifestPath, manifestKey(job.jobId));
  return { manifest, media, playlists, indexes, manifestUpload };
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

const exists = (path: string) =>
  stat(path).then(
    () => true,
    () => false,
  );
