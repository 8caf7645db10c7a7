/**
 * Which audio renditions a source gets: every audio stream becomes an alternate rendition (HLS
 * `EXT-X-MEDIA TYPE=AUDIO`) in the `stereo` group, down-mixed to two channels (ITU-R BS.775 levels:
 * centre and surrounds at −3 dB, LFE left out, ffmpeg's default matrix) so every player can play
 * it; surround streams also keep 5.1 in the `surround` group where the preset allows.
 */
import { type AudioStreamSummary, languageName, type Preset, type ProbeSummary } from "@tcoder/worker/contract";

export const audioGroups = ["stereo", "surround"] as const;
export type AudioGroup = (typeof audioGroups)[number];

export interface PlannedAudio {
  /** Folder and rendition name: `audio-<stream>` (stereo) or `audio-<stream>-5.1`. */
  name: string;
  /** Position among the source's audio streams (`0:a:<n>`). */
  sourceIndex: number;
  group: AudioGroup;
  channels: number;
  bitrateKbps: number;
  sampleRate: number;
  /** HLS NAME, unique in its group: the stream's title, else its language's name, else "Audio n" (the group says 5.1). */
  label: string;
  language?: string;
  /** DEFAULT=YES in its group: the source's default stream. */
  default: boolean;
}

const SURROUND_CHANNELS = 6;

/** Every audio stream of the probe; an older probe without the list has its one summarized stream. */
const streamsOf = (probe: ProbeSummary): AudioStreamSummary[] =>
  probe.audioStreams ?? (probe.audio ? [{ index: 0, ...probe.audio, default: true }] : []);

export function planAudio(preset: Preset, probe: ProbeSummary): PlannedAudio[] {
  const streams = streamsOf(probe);
  const labels = new Map<AudioGroup, Set<string>>(audioGroups.map((g) => [g, new Set()]));
  const unique = (group: AudioGroup, label: string) => {
    const taken = labels.get(group) as Set<string>;
    let candidate = label;
    for (let n = 2; taken.has(candidate); n++) candidate = `${label} (${n})`;
    taken.add(candidate);
    return candidate;
  };
  const planned: PlannedAudio[] = [];
  for (const stream of streams) {
    const base = stream.title ?? languageName(stream.language) ?? `Audio ${stream.index + 1}`;
    const shared = {
      sourceIndex: stream.index,
      sampleRate: stream.sampleRate === 44_100 ? 44_100 : 48_000,
      ...(stream.language ? { language: stream.language } : {}),
      default: stream.default,
    };
    planned.push({
      ...shared,
      name: `audio-${stream.index}`,
      group: "stereo",
      channels: Math.min(2, stream.channels),
      bitrateKbps: preset.audioBitrateKbps,
      label: unique("stereo", base),
    });
    if (preset.surroundAudioBitrateKbps && stream.channels >= SURROUND_CHANNELS)
      planned.push({
        ...shared,
        name: `audio-${stream.index}-5.1`,
        group: "surround",
        channels: SURROUND_CHANNELS,
        bitrateKbps: preset.surroundAudioBitrateKbps,
        label: unique("surround", base),
      });
  }
  return planned;
}
