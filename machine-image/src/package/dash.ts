/**
 * A DASH manifest (`manifest.mpd`) over the very CMAF segments the HLS renditions use: every
 * representation points at `hls/<rendition>/init.mp4` and `seg_<n>.m4s` through a SegmentTemplate
 * whose timeline is the media playlist's, so DASH players need no second copy of the media.
 */
import { type DashText, dashTextAdaptationSet, xmlEscape as xml } from "@tcoder/worker/contract";
import type { PlannedAudio } from "../media/audio-plan.ts";
import type { PlannedRendition } from "../media/ladder.ts";
import type { MediaPlaylist } from "./hls-master.ts";

export interface DashVideo {
  rendition: PlannedRendition;
  codec: string;
  bandwidth: number;
  playlist: MediaPlaylist;
}

export interface DashAudio {
  rendition: PlannedAudio;
  bandwidth: number;
  playlist: MediaPlaylist;
}

export type { DashText };

export interface DashPackage {
  durationSeconds: number;
  frameRate?: string;
  video: DashVideo[];
  audio: DashAudio[];
  text: DashText[];
}

const TIMESCALE = 1000;

const duration = (seconds: number) => `PT${seconds.toFixed(3)}S`;

/** SegmentTemplate with a SegmentTimeline taken from the HLS media playlist of the same files. */
function segmentTemplate(name: string, playlist: MediaPlaylist, indent: string): string {
  const entries: string[] = [];
  let t = 0;
  for (const segment of playlist.segments) {
    const d = Math.round(segment.durationSeconds * TIMESCALE);
    entries.push(`${indent}    <S t="${t}" d="${d}"/>`);
    t += d;
  }
  return [
    `${indent}<SegmentTemplate timescale="${TIMESCALE}" startNumber="0" initialization="hls/${name}/${playlist.initSegment ?? "init.mp4"}" media="hls/${name}/seg_$Number%05d$.m4s">`,
    `${indent}  <SegmentTimeline>`,
    ...entries,
    `${indent}  </SegmentTimeline>`,
    `${indent}</SegmentTemplate>`,
  ].join("\n");
}

// ISO/IEC 23001-8 (CICP) transfer characteristics: 16 = PQ, 18 = HLG.
const TRANSFER_CICP = { pq: 16, hlg: 18 } as const;

export function writeDashManifest(pkg: DashPackage): string {
  const lines = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" profiles="urn:mpeg:dash:profile:isoff-live:2011" type="static" mediaPresentationDuration="${duration(pkg.durationSeconds)}" minBufferTime="PT2S">`,
    '  <Period id="0" start="PT0S">',
  ];
  let set = 0;
  // One adaptation set per codec and range: a player switches only between representations it can decode alike.
  const videoSets = new Map<string, DashVideo[]>();
  for (const v of pkg.video) {
    const id = `${v.rendition.codec}-${v.rendition.dynamicRange}`;
    videoSets.set(id, [...(videoSets.get(id) ?? []), v]);
  }
  for (const members of videoSets.values()) {
    const range = (members[0] as DashVideo).rendition.dynamicRange;
    lines.push(
      `    <AdaptationSet id="${set++}" contentType="video" mimeType="video/mp4" segmentAlignment="true" startWithSAP="1">`,
    );
    if (range !== "sdr")
      lines.push(
        `      <SupplementalProperty schemeIdUri="urn:mpeg:mpegB:cicp:TransferCharacteristics" value="${TRANSFER_CICP[range]}"/>`,
      );
    for (const v of members) {
      const r = v.rendition;
      lines.push(
        `      <Representation id="${xml(r.name)}" codecs="${v.codec}" bandwidth="${v.bandwidth}" width="${r.width}" height="${r.height}" sar="1:1"${pkg.frameRate ? ` frameRate="${pkg.frameRate}"` : ""}>`,
        segmentTemplate(r.name, v.playlist, "        "),
        "      </Representation>",
      );
    }
    lines.push("    </AdaptationSet>");
  }
  for (const a of pkg.audio) {
    const r = a.rendition;
    lines.push(
      `    <AdaptationSet id="${set++}" contentType="audio" mimeType="audio/mp4" segmentAlignment="true"${r.language ? ` lang="${xml(r.language)}"` : ""}>`,
      `      <Label>${xml(r.label)}</Label>`,
      `      <Role schemeIdUri="urn:mpeg:dash:role:2011" value="${r.default && r.group === "stereo" ? "main" : "alternate"}"/>`,
      `      <Representation id="${xml(r.name)}" codecs="mp4a.40.2" bandwidth="${a.bandwidth}" audioSamplingRate="${r.sampleRate}">`,
      `        <AudioChannelConfiguration schemeIdUri="urn:mpeg:dash:23003:3:audio_channel_configuration:2011" value="${r.channels}"/>`,
      segmentTemplate(r.name, a.playlist, "        "),
      "      </Representation>",
      "    </AdaptationSet>",
    );
  }
  // Text sets come last: the API rewrites them when captions are added to a finished job (contract/dash.ts).
  for (const t of pkg.text) lines.push(...dashTextAdaptationSet(t, set++));
  lines.push("  </Period>", "</MPD>");
  return `${lines.join("\n")}\n`;
}
