/**
 * The entries of an HLS master playlist from measured renditions: every video rung once per audio
 * group (stereo, and 5.1 where the source has it), the alternate audio renditions of each group,
 * or for audio-only packages each group's default rendition as the variant. Shared by the package
 * (build.ts) and a chunked job's live playlists (chunked/live.ts).
 */
import type { MediaRendition, VariantStream } from "@tcoder/worker/contract";
import type { AudioGroup, PlannedAudio } from "../media/audio-plan.ts";
import type { LadderPlan, PlannedRendition } from "../media/ladder.ts";
import { AAC_LC_CODEC, videoRangeOf } from "./hls-master.ts";

export interface Rates {
  bandwidth: number;
  averageBandwidth: number;
}

export interface RatedVideo {
  planned: PlannedRendition;
  rates: Rates;
  codec: string;
}

/** The renditions of an audio group: stereo has every stream; surround has each stream's 5.1, else its stereo. */
export function groupMembers(audio: readonly PlannedAudio[], group: AudioGroup): PlannedAudio[] {
  if (group === "stereo") return audio.filter((a) => a.group === "stereo");
  if (!audio.some((a) => a.group === "surround")) return [];
  return audio
    .filter((a) => a.group === "stereo")
    .map((stereo) => audio.find((a) => a.group === "surround" && a.sourceIndex === stereo.sourceIndex) ?? stereo);
}

export function masterEntries(p: {
  plan: Pick<LadderPlan, "audio" | "frameRate">;
  video: readonly RatedVideo[];
  /** Each audio rendition's rates, by name. */
  audioRates: ReadonlyMap<string, Rates>;
  /** A rendition's media playlist, relative to the master. */
  uriOf: (name: string) => string;
  subtitlesGroup?: string;
}): { variants: VariantStream[]; audioMedia: MediaRendition[] } {
  const { plan, uriOf } = p;
  const subtitlesGroup = p.subtitlesGroup ? { subtitlesGroup: p.subtitlesGroup } : {};
  const groups = (["stereo", "surround"] as const)
    .map((group) => ({ group, members: groupMembers(plan.audio, group) }))
    .filter((g) => g.members.length > 0);
  const audioMedia: MediaRendition[] = groups.flatMap(({ group, members }) =>
    members.map((a) => ({
      type: "AUDIO" as const,
      groupId: group,
      name: a.label,
      ...(a.language ? { language: a.language } : {}),
      default: a.default,
      channels: a.channels,
      uri: uriOf(a.name),
    })),
  );
  // A group's cost is its most demanding member: that is what a player may add to the video.
  const groupRates = (members: PlannedAudio[]): Rates => {
    const rates = members.map((a) => p.audioRates.get(a.name) ?? { bandwidth: 0, averageBandwidth: 0 });
    return {
      bandwidth: Math.max(...rates.map((r) => r.bandwidth)),
      averageBandwidth: Math.max(...rates.map((r) => r.averageBandwidth)),
    };
  };

  const variants: VariantStream[] = [];
  for (const { planned: r, rates, codec } of p.video) {
    const videoPart = {
      uri: uriOf(r.name),
      resolution: { width: r.width, height: r.height },
      ...(plan.frameRate ? { frameRate: plan.frameRate.value } : {}),
      videoRange: videoRangeOf(r.dynamicRange),
    };
    if (groups.length === 0)
      variants.push({
        ...videoPart,
        bandwidth: rates.bandwidth,
        averageBandwidth: rates.averageBandwidth,
        codecs: [codec],
        ...subtitlesGroup,
      });
    for (const { group, members } of groups) {
      const audio = groupRates(members);
      variants.push({
        ...videoPart,
        bandwidth: rates.bandwidth + audio.bandwidth,
        averageBandwidth: rates.averageBandwidth + audio.averageBandwidth,
        codecs: [codec, AAC_LC_CODEC],
        audioGroup: group,
        ...subtitlesGroup,
      });
    }
  }
  if (p.video.length === 0)
    // Audio only: each group's default rendition is the variant; the group offers the others.
    for (const { group, members } of groups) {
      const main = members.find((a) => a.default) ?? (members[0] as PlannedAudio);
      variants.push({
        uri: uriOf(main.name),
        ...groupRates(members),
        codecs: [AAC_LC_CODEC],
        audioGroup: group,
        ...subtitlesGroup,
      });
    }
  return { variants, audioMedia };
}
