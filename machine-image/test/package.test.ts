import { presets } from "@tcoder/worker/contract";
import { describe, expect, it } from "vitest";
import {
  avcCodecFromInit,
  measureBandwidth,
  parseMediaPlaylist,
  writeMasterPlaylist,
} from "../src/package/hls-master.ts";
import { cacheControlFor, contentTypeFor } from "../src/package/layout.ts";
import { planThumbnails, writeThumbnailsVtt } from "../src/package/thumbnails.ts";

const mediaPlaylist = `#EXTM3U
#EXT-X-VERSION:7
#EXT-X-TARGETDURATION:6
#EXT-X-MAP:URI="init.mp4"
#EXTINF:6.000000,
seg_00000.m4s
#EXTINF:2.500000,
seg_00001.m4s
#EXT-X-ENDLIST
`;

describe("HLS master playlist", () => {
  it("parses a media playlist's init segment, segments and duration", () => {
    expect(parseMediaPlaylist(mediaPlaylist)).toEqual({
      initSegment: "init.mp4",
      segments: [
        { uri: "seg_00000.m4s", durationSeconds: 6 },
        { uri: "seg_00001.m4s", durationSeconds: 2.5 },
      ],
      durationSeconds: 8.5,
    });
  });

  it("measures peak and average bandwidth from segment sizes", () => {
    const sizes: Record<string, number> = { "init.mp4": 1000, "seg_00000.m4s": 599_000, "seg_00001.m4s": 500_000 };
    const rates = measureBandwidth(parseMediaPlaylist(mediaPlaylist), (uri) => sizes[uri] ?? 0);
    expect(rates.sizeBytes).toBe(1_100_000);
    expect(rates.averageBandwidth).toBe(Math.ceil((1_100_000 * 8) / 8.5));
    expect(rates.bandwidth).toBe(1_600_000); // 500 kB over 2.5 s is the peak
  });

  it("reads the H.264 codec string from the avcC box of an init segment", () => {
    const box = (type: string, body: number[]) => [0, 0, 0, 8 + body.length, ...Buffer.from(type), ...body];
    const init = Uint8Array.from([...box("ftyp", [1, 2, 3, 4]), ...box("avcC", [1, 0x64, 0x00, 0x28, 0xff])]);
    expect(avcCodecFromInit(init)).toBe("avc1.640028");
    expect(avcCodecFromInit(Uint8Array.from(box("free", [])))).toBeNull();
  });

  it("lists variants highest bandwidth first with every attribute players need", () => {
    const master = writeMasterPlaylist([
      {
        uri: "360p/playlist.m3u8",
        bandwidth: 900_000,
        averageBandwidth: 800_000,
        codecs: ["avc1.4D401E", "mp4a.40.2"],
        resolution: { width: 640, height: 360 },
        frameRate: 30,
      },
      {
        uri: "720p/playlist.m3u8",
        bandwidth: 3_300_000,
        averageBandwidth: 3_000_000,
        codecs: ["avc1.64001F", "mp4a.40.2"],
        resolution: { width: 1280, height: 720 },
        frameRate: 30,
      },
    ]);
    expect(master).toBe(`#EXTM3U
#EXT-X-VERSION:7
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-STREAM-INF:BANDWIDTH=3300000,AVERAGE-BANDWIDTH=3000000,RESOLUTION=1280x720,CODECS="avc1.64001F,mp4a.40.2",FRAME-RATE=30.000
720p/playlist.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=900000,AVERAGE-BANDWIDTH=800000,RESOLUTION=640x360,CODECS="avc1.4D401E,mp4a.40.2",FRAME-RATE=30.000
360p/playlist.m3u8
`);
  });
});

describe("thumbnails", () => {
  const probe = (durationSeconds: number) => ({
    formatName: "mp4",
    durationSeconds,
    sizeBytes: 1,
    video: {
      codec: "h264",
      width: 1920,
      height: 1080,
      displayWidth: 1920,
      displayHeight: 1080,
      rotation: 0,
      frameRate: 30,
    },
  });

  it("sizes thumbnails to the displayed aspect ratio and widens the interval for long sources", () => {
    expect(planThumbnails(presets["hls-ladder"], probe(60))).toEqual({
      width: 160,
      height: 90,
      intervalSeconds: 5,
      columns: 10,
    });
    expect(planThumbnails(presets["hls-ladder"], probe(4 * 3600))?.intervalSeconds).toBe(24);
    expect(planThumbnails(presets["mp4-720p"], probe(60))).toBeNull();
  });

  it("writes one cue per tile with its xywh position in the sprite, the last cue ending at the duration", () => {
    const plan = { width: 160, height: 90, intervalSeconds: 5, columns: 2 };
    expect(writeThumbnailsVtt(plan, 3, 12.5, "sprite.jpg")).toBe(`WEBVTT

00:00:00.000 --> 00:00:05.000
sprite.jpg#xywh=0,0,160,90

00:00:05.000 --> 00:00:10.000
sprite.jpg#xywh=160,0,160,90

00:00:10.000 --> 00:00:12.500
sprite.jpg#xywh=0,90,160,90
`);
  });
});

describe("object metadata", () => {
  it("caches media for a year and playlists and the manifest briefly", () => {
    expect(cacheControlFor("outputs/j/1/hls/720p/seg_00001.m4s")).toContain("immutable");
    expect(cacheControlFor("outputs/j/1/video.mp4")).toContain("immutable");
    expect(cacheControlFor("outputs/j/1/hls/master.m3u8")).toBe("public, max-age=60");
    expect(cacheControlFor("outputs/j/manifest.json")).toContain("must-revalidate");
    expect(contentTypeFor("a/playlist.m3u8")).toBe("application/vnd.apple.mpegurl");
    expect(contentTypeFor("a/seg_00000.m4s")).toBe("video/iso.segment");
    expect(contentTypeFor("a/thumbnails.vtt")).toMatch(/^text\/vtt/);
  });
});
