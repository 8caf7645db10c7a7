/**
 * Media people really upload (issue 12): non-square pixels, interlaced broadcast, HDR phone video,
 * several audio tracks, subtitles. Each case is a clip generated with ffmpeg, transcoded by the real
 * pipeline, and checked with ffprobe on what was published.
 */
import { readFile } from "node:fs/promises";
import { presets } from "@tcoder/worker/contract";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clips } from "./support/clips.ts";
import {
  audioStreams,
  channelRmsLevels,
  decodeAll,
  firstFrameSideData,
  firstFrameStats,
  interlaceDetection,
  mediaFacts,
} from "./support/outputs.ts";
import { completed, type Pipeline, startPipeline } from "./support/pipeline.ts";

let pipeline: Pipeline;

beforeAll(async () => {
  pipeline = await startPipeline();
});

afterAll(async () => {
  await pipeline?.stop();
});

/** Within 1% of the expected display aspect, with square pixels. */
const expectShape = (facts: Awaited<ReturnType<typeof mediaFacts>>, aspect: number) => {
  expect(facts.video?.sampleAspectRatio).toBe("1:1");
  expect(Math.abs((facts.video?.displayAspect ?? 0) / aspect - 1)).toBeLessThan(0.01);
};

describe("non-square pixels", () => {
  it.each([
    ["NTSC 16:9 (720×480 at 32:27)", "720x480", "32/27", { displayWidth: 853, displayHeight: 480 }],
    ["NTSC 4:3 (720×480 at 8:9)", "720x480", "8/9", { displayWidth: 640, displayHeight: 480 }],
  ] as const)(
    "gives %s its display shape in square pixels: every rung, the MP4, poster and sprite",
    async (_, size, sar, display) => {
      const source = await clips.anamorphic(pipeline.dir, size, sar);
      const sourceAspect = (await mediaFacts(source)).video?.displayAspect ?? 0;
      const run = await pipeline.transcode(source, { preset: presets["hls-small"] });
      const { outputs, probe } = completed(run);
      expect(probe.video).toMatchObject({
        width: 720,
        height: 480,
        sampleAspectRatio: sar.replace("/", ":"),
        ...display,
      });
      expect(Math.abs(display.displayWidth / display.displayHeight / sourceAspect - 1)).toBeLessThan(0.01);

      expect(outputs.renditions.map((r) => r.height)).toEqual([360, 234]);
      for (const rendition of outputs.renditions) {
        const facts = await mediaFacts(run.local(rendition.playlist));
        // Untagged SD is BT.601: converted, and tagged BT.709 like every SDR output.
        expect(facts.video).toMatchObject({
          width: rendition.width,
          height: rendition.height,
          colorPrimaries: "bt709",
          colorTransfer: "bt709",
          colorSpace: "bt709",
        });
        expectShape(facts, sourceAspect);
      }
      for (const key of [outputs.mp4, outputs.poster, outputs.thumbnailsSprite])
        expectShape(await mediaFacts(run.local(key ?? "")), sourceAspect);
    },
  );
});

describe("interlaced sources", () => {
  it.each([
    ["top field first MPEG-2", "tff", "tt"],
    ["bottom field first H.264", "bff", "bb"],
  ] as const)("deinterlaces %s one frame per frame, so no rung shows combing", async (_, order, fieldOrder) => {
    const source = await clips.interlaced(pipeline.dir, order);
    // The source really is combed: idet sees the field order in nearly every frame.
    const before = await interlaceDetection(source);
    expect(before[order]).toBeGreaterThanOrEqual(20);
    const run = await pipeline.transcode(source, { preset: presets["hls-small"] });
    const { outputs, probe } = completed(run);
    expect(probe.video).toMatchObject({ fieldOrder, frameRate: 25 });
    expect(outputs.renditions.map((r) => r.name)).toEqual(["360p", "234p"]);
    for (const key of [...outputs.renditions.map((r) => r.playlist), outputs.mp4 ?? ""]) {
      const after = await interlaceDetection(run.local(key));
      // Left interlaced, every frame reads as combed (as the source does). A deinterlaced rung is
      // progressive; idet may still misread a few frames of a low-bitrate ultrafast encode (the
      // same frames decoded before encoding read as all progressive).
      expect(after.progressive, key).toBeGreaterThanOrEqual(20);
      expect(after.tff + after.bff, key).toBeLessThanOrEqual(5);
      expect((await mediaFacts(run.local(key))).video?.frameRate).toBe(25);
    }
  });
});

describe("HDR sources", () => {
  const bt709 = { colorPrimaries: "bt709", colorTransfer: "bt709", colorSpace: "bt709" };
  let reference: { luma: number; saturation: number };
  beforeAll(async () => {
    reference = await firstFrameStats(await clips.sdrReference(pipeline.dir));
  });

  it.each([
    ["PQ", "pq"],
    ["HLG", "hlg"],
  ] as const)("tone-maps 10-bit HEVC %s to SDR BT.709 for the H.264 ladder, not washed out", async (_, transfer) => {
    const source = await clips.hdr(pipeline.dir, transfer);
    // Read as if it were SDR, the source is grey: the saturation a tone-mapped picture must beat.
    const naive = await firstFrameStats(source);
    expect(naive.saturation).toBeLessThan(reference.saturation * 0.5);
    const run = await pipeline.transcode(source);
    const { outputs, probe } = completed(run);
    expect(probe.video).toMatchObject({ dynamicRange: transfer, colorPrimaries: "bt2020" });
    expect(outputs.renditions.map((r) => r.name)).toEqual(["360p"]);
    for (const key of [outputs.renditions[0]?.playlist ?? "", outputs.mp4 ?? ""]) {
      const facts = await mediaFacts(run.local(key));
      expect(facts.video).toMatchObject({ codec: "h264", pixelFormat: "yuv420p", ...bt709 });
      const stats = await firstFrameStats(run.local(key));
      expect(stats.saturation).toBeGreaterThan(reference.saturation * 0.7);
      expect(Math.abs(stats.luma / reference.luma - 1)).toBeLessThan(0.2);
    }
    const master = await readFile(run.local(outputs.hlsMaster ?? ""), "utf8");
    expect(master).toContain("VIDEO-RANGE=SDR");
    expect(master).not.toMatch(/VIDEO-RANGE=(PQ|HLG)/);
  });

  it.each([
    ["PQ", "pq", "smpte2084"],
    ["HLG", "hlg", "arib-std-b67"],
  ] as const)(
    "keeps %s in HEVC Main10 rungs of the HDR preset, with an SDR H.264 fallback",
    async (_, transfer, trc) => {
      const run = await pipeline.transcode(await clips.hdr(pipeline.dir, transfer), { preset: presets["hls-hdr"] });
      const { outputs } = completed(run);
      expect(outputs.renditions.map((r) => r.name)).toEqual(["360p-hevc", "360p"]);
      const [hevc, avc] = outputs.renditions;
      const hevcFacts = await mediaFacts(run.local(hevc?.playlist ?? ""));
      expect(hevcFacts.video).toMatchObject({
        codec: "hevc",
        codecTag: "hvc1",
        profile: "Main 10",
        pixelFormat: "yuv420p10le",
        colorPrimaries: "bt2020",
        colorTransfer: trc,
        colorSpace: "bt2020nc",
      });
      if (transfer === "pq")
        expect(await firstFrameSideData(run.local(hevc?.playlist ?? ""))).toEqual(
          expect.arrayContaining(["Mastering display metadata", "Content light level metadata"]),
        );
      expect((await mediaFacts(run.local(avc?.playlist ?? ""))).video).toMatchObject({ codec: "h264", ...bt709 });
      // The progressive MP4 is the SDR H.264 stream, playable everywhere.
      expect((await mediaFacts(run.local(outputs.mp4 ?? ""))).video).toMatchObject({ codec: "h264", ...bt709 });

      const master = await readFile(run.local(outputs.hlsMaster ?? ""), "utf8");
      const range = transfer === "pq" ? "PQ" : "HLG";
      expect(master).toMatch(
        new RegExp(
          `#EXT-X-STREAM-INF:[^\\n]*CODECS="hvc1\\.2\\.4\\.L\\d+(\\.[0-9A-F]{1,2})+,mp4a\\.40\\.2"[^\\n]*VIDEO-RANGE=${range}[^\\n]*\\n360p-hevc/playlist\\.m3u8`,
        ),
      );
      expect(master).toMatch(
        /#EXT-X-STREAM-INF:[^\n]*CODECS="avc1\.[0-9A-F]{6},mp4a\.40\.2"[^\n]*VIDEO-RANGE=SDR[^\n]*\n360p\/playlist\.m3u8/,
      );
    },
  );
});

describe("several audio tracks", () => {
  it("makes every audio stream an alternate rendition with its language and name, keeps 5.1 and a correct stereo down-mix, and puts all in the MP4", async () => {
    const run = await pipeline.transcode(await clips.twoLanguages(pipeline.dir));
    const { outputs } = completed(run);
    expect(outputs.renditions.map((r) => r.name)).toEqual(["180p"]);
    expect(outputs.audio?.map(({ bandwidth: _, playlist: __, ...a }) => a)).toEqual([
      { name: "audio-0", label: "English", language: "en", channels: 1, default: true },
      { name: "audio-1", label: "Doublage", language: "fr", channels: 2, default: false },
      { name: "audio-1-5.1", label: "Doublage", language: "fr", channels: 6, default: false },
    ]);

    const master = await readFile(run.local(outputs.hlsMaster ?? ""), "utf8");
    const media = master.split("\n").filter((l) => l.startsWith("#EXT-X-MEDIA:"));
    expect(media).toEqual([
      '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="stereo",NAME="English",LANGUAGE="en",DEFAULT=YES,AUTOSELECT=YES,CHANNELS="1",URI="audio-0/playlist.m3u8"',
      '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="stereo",NAME="Doublage",LANGUAGE="fr",DEFAULT=NO,AUTOSELECT=YES,CHANNELS="2",URI="audio-1/playlist.m3u8"',
      // Surround players get the same languages: 5.1 where the source has it, stereo otherwise.
      '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="surround",NAME="English",LANGUAGE="en",DEFAULT=YES,AUTOSELECT=YES,CHANNELS="1",URI="audio-0/playlist.m3u8"',
      '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="surround",NAME="Doublage",LANGUAGE="fr",DEFAULT=NO,AUTOSELECT=YES,CHANNELS="6",URI="audio-1-5.1/playlist.m3u8"',
    ]);
    const variants = master.split("\n").filter((l) => l.startsWith("#EXT-X-STREAM-INF:"));
    expect(variants).toHaveLength(2);
    expect(variants.map((v) => /AUDIO="(\w+)"/.exec(v)?.[1]).sort()).toEqual(["stereo", "surround"]);
    for (const v of variants) expect(v).toMatch(/CODECS="avc1\.[0-9A-F]{6},mp4a\.40\.2"/);
    // Video renditions carry no audio of their own.
    expect((await mediaFacts(run.local(outputs.renditions[0]?.playlist ?? ""))).audio).toBeUndefined();

    const playlistOf = (name: string) => run.local(outputs.audio?.find((a) => a.name === name)?.playlist ?? "");
    expect(await audioStreams(playlistOf("audio-1-5.1"))).toEqual([
      expect.objectContaining({ codec: "aac", channels: 6 }),
    ]);
    // The centre-channel dialog reaches both stereo channels at −3 dB (0.5 peak sine: −9 dBFS RMS → −12).
    const [left, right] = await channelRmsLevels(playlistOf("audio-1"));
    expect(Math.abs((left ?? 0) + 12)).toBeLessThan(1.5);
    expect(Math.abs((right ?? 0) + 12)).toBeLessThan(1.5);

    expect(await audioStreams(run.local(outputs.mp4 ?? ""))).toEqual([
      { codec: "aac", channels: 1, language: "eng", default: true },
      { codec: "aac", channels: 2, language: "fre", default: false },
      { codec: "aac", channels: 6, language: "fre", default: false },
    ]);
  });
});

describe("subtitles", () => {
  const cue1 = "00:00:01.000 --> 00:00:02.500\nHello there";
  const cue2 = "00:00:05.500 --> 00:00:06.500\nAcross the boundary";
  const cue3 = "00:00:07.000 --> 00:00:07.800\n<i>Last</i> line";

  it.each([
    ["SubRip and ASS in Matroska", "mkv"],
    ["mov_text in MP4", "mp4"],
  ] as const)("turns %s into WebVTT renditions cut on the video's segment boundaries", async (_, container) => {
    const run = await pipeline.transcode(await clips.subtitled(pipeline.dir, container), {
      preset: presets["hls-small"],
    });
    const { outputs } = completed(run);
    const expected =
      container === "mkv"
        ? [
            { name: "subs-0", label: "English", language: "en", default: false, forced: false },
            { name: "subs-1", label: "Français (forcés)", language: "fr", default: false, forced: true },
          ]
        : // MP4 muxers mark their one text track default.
          [{ name: "subs-0", label: "English", language: "en", default: true, forced: false }];
    expect(outputs.subtitles?.map(({ playlist: _, vtt: __, ...s }) => s)).toEqual(expected);
    expect(outputs.skippedSubtitles).toBeUndefined();

    const master = await readFile(run.local(outputs.hlsMaster ?? ""), "utf8");
    expect(master).toContain(
      `#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",NAME="English",LANGUAGE="en",DEFAULT=${container === "mp4" ? "YES" : "NO"},AUTOSELECT=YES,FORCED=NO,URI="subs-0/playlist.m3u8"`,
    );
    for (const variant of master.split("\n").filter((l) => l.startsWith("#EXT-X-STREAM-INF:")))
      expect(variant).toContain('SUBTITLES="subs"');

    const durations = (text: string) => text.match(/#EXTINF:[\d.]+/g)?.map((l) => Number(l.slice(8)));
    const videoPlaylist = await readFile(run.local(outputs.renditions[0]?.playlist ?? ""), "utf8");
    expect(durations(videoPlaylist)).toEqual([6, 2]);
    for (const subtitle of outputs.subtitles ?? []) {
      const playlist = await readFile(run.local(subtitle.playlist), "utf8");
      expect(durations(playlist)).toEqual(durations(videoPlaylist));
      const segment = async (n: number) =>
        readFile(run.local(subtitle.playlist.replace("playlist.m3u8", `seg_0000${n}.vtt`)), "utf8");
      const header = "WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:0,LOCAL:00:00:00.000\n\n";
      // The cue across the boundary is in both segments, at the source's times.
      expect(await segment(0)).toBe(`${header}${cue1}\n\n${cue2}\n`);
      expect(await segment(1)).toBe(`${header}${cue2}\n\n${cue3}\n`);
      expect(await readFile(run.local(subtitle.vtt), "utf8")).toBe(`WEBVTT\n\n${cue1}\n\n${cue2}\n\n${cue3}\n`);
    }
  });
});

describe("DASH", () => {
  it("describes the same CMAF segments in manifest.mpd, and ffmpeg decodes every representation from it", async () => {
    const run = await pipeline.transcode(await clips.twoLanguages(pipeline.dir));
    const { outputs } = completed(run);
    const mpdKey = outputs.dashManifest ?? "";
    expect(mpdKey).toBe(`outputs/${run.jobId}/1/manifest.mpd`);
    const mpd = await readFile(run.local(mpdKey), "utf8");
    // No second copy of the media: every file it names is an HLS rendition's init or segment.
    const templates = [...mpd.matchAll(/initialization="([^"]+)" media="([^"]+)"/g)];
    expect(templates.map((m) => m[1])).toEqual([
      "hls/180p/init.mp4",
      "hls/audio-0/init.mp4",
      "hls/audio-1/init.mp4",
      "hls/audio-1-5.1/init.mp4",
    ]);
    expect(run.keys.filter((k) => !k.includes("/hls/") && /\.(m4s|mp4)$/.test(k))).toEqual([
      `outputs/${run.jobId}/1/video.mp4`,
    ]);
    expect(mpd).toContain('lang="fr"');
    const streams = await decodeAll(run.local(mpdKey));
    expect(streams).toEqual([
      { type: "video", codec: "h264" },
      { type: "audio", codec: "aac" },
      { type: "audio", codec: "aac" },
      { type: "audio", codec: "aac" },
    ]);
    const declared = Number(/mediaPresentationDuration="PT([\d.]+)S"/.exec(mpd)?.[1]);
    expect(Math.abs(declared - 1.5)).toBeLessThan(0.2);
  });
});
