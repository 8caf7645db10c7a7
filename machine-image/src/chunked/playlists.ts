/**
 * A rendition's segments across a chunked job's tasks, as its media playlists list them. Each task
 * attempt uploads under its own directory (`hls/<rendition>/<task>.<attempt>/`), so no late
 * machine can overwrite what a playlist lists; the init segment is announced again only when a
 * chunk's differs from the one before (same encoder settings give the same one).
 */
import type { EncodedTrack, ListedSegment, TaskResult } from "@tcoder/worker/contract";
import { workLayout } from "../media/ffmpeg-args.ts";

/** A key below the attempt prefix, relative to the rendition's directory (where its playlists are). */
export const relativeToRendition = (name: string, uri: string): string => {
  const dir = `${workLayout.hlsDir(name)}/`;
  if (!uri.startsWith(dir)) throw new Error(`${uri} is not in ${dir}`);
  return uri.slice(dir.length);
};

export function listedSegments(name: string, tracks: readonly EncodedTrack[]): ListedSegment[] {
  const listed: ListedSegment[] = [];
  let init: string | undefined;
  for (const track of tracks) {
    track.segments.forEach((segment, i) => {
      const map = i === 0 && track.init.sha256 !== init ? relativeToRendition(name, track.init.uri) : undefined;
      listed.push({
        uri: relativeToRendition(name, segment.uri),
        durationSeconds: segment.durationSeconds,
        ...(map ? { map } : {}),
      });
    });
    init = track.init.sha256;
  }
  return listed;
}

/** Video task results by chunk index (task `v<k>`), in order. */
export function videoResultsInOrder(results: Record<string, TaskResult>): Extract<TaskResult, { kind: "video" }>[] {
  return Object.entries(results)
    .flatMap(([name, result]) => (result.kind === "video" ? [{ index: Number(name.slice(1)), result }] : []))
    .sort((a, b) => a.index - b.index)
    .map((r) => r.result);
}

/** One rendition's part of each chunk, in chunk order; null when a chunk lacks it. */
export function tracksOf(name: string, chunks: readonly Extract<TaskResult, { kind: "video" | "audio" }>[]) {
  const tracks = chunks.map((c) => c.tracks.find((t) => t.name === name));
  return tracks.every((t): t is EncodedTrack => t !== undefined) ? tracks : null;
}
