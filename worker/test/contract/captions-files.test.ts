import { describe, expect, it } from "vitest";
import {
  captionsFormat,
  DashManifestError,
  dashTextAdaptationSet,
  parseCues,
  withDashTextSets,
  withSubtitleRenditions,
} from "../../src/contract/index.ts";

const master = [
  "#EXTM3U",
  "#EXT-X-VERSION:7",
  "#EXT-X-INDEPENDENT-SEGMENTS",
  '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="stereo",NAME="English",LANGUAGE="en",DEFAULT=YES,AUTOSELECT=YES,CHANNELS="2",URI="audio-0/playlist.m3u8"',
  '#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",NAME="English",LANGUAGE="en",DEFAULT=NO,AUTOSELECT=YES,FORCED=NO,URI="subs-0/playlist.m3u8"',
  '#EXT-X-STREAM-INF:BANDWIDTH=900000,AVERAGE-BANDWIDTH=800000,RESOLUTION=640x360,CODECS="avc1.4D401E,mp4a.40.2",AUDIO="stereo",SUBTITLES="subs"',
  "360p/playlist.m3u8",
  "",
].join("\n");

describe("withSubtitleRenditions", () => {
  it("replaces the subtitle renditions after the other renditions and keeps every variant naming the group", () => {
    const out = withSubtitleRenditions(master, [
      {
        type: "SUBTITLES",
        groupId: "subs",
        name: "English",
        language: "en",
        default: false,
        forced: false,
        uri: "subs-0/playlist.m3u8",
      },
      {
        type: "SUBTITLES",
        groupId: "subs",
        name: "Deutsch",
        language: "de",
        default: false,
        forced: false,
        uri: "captions-de/playlist.m3u8",
      },
    ]);
    const lines = out.split("\n");
    expect(lines[4]).toBe(master.split("\n")[4]);
    expect(lines[5]).toBe(
      '#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",NAME="Deutsch",LANGUAGE="de",DEFAULT=NO,AUTOSELECT=YES,FORCED=NO,URI="captions-de/playlist.m3u8"',
    );
    expect(lines[6]).toBe(master.split("\n")[5]);
    expect(lines.filter((l) => l.includes("SUBTITLES=")).length).toBe(1);
  });

  it("drops the group from every variant when no subtitles are left, and keeps the rest as it was", () => {
    const out = withSubtitleRenditions(master, []);
    expect(out).not.toContain("SUBTITLES");
    expect(out.split("\n").filter((l) => !l.includes("TYPE=SUBTITLES")).length).toBe(out.split("\n").length);
    expect(out).toContain('AUDIO="stereo"\n360p/playlist.m3u8');
  });
});

describe("captionsFormat", () => {
  it.each([
    ["WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nHi\n", "webvtt"],
    ["\uFEFFWEBVTT - with a title\r\n\r\n00:01.000 --> 00:02.000\r\nHi\r\n", "webvtt"],
    ["1\r\n00:00:01,000 --> 00:00:02,000\r\nHi\r\n", "subrip"],
    ["\n\n12\n00:00:01,000 --> 00:00:02,000\nHi\n", "subrip"],
    ["WEBVTTX\n\n00:00:01.000 --> 00:00:02.000\nHi\n", null],
    ["Dialogue: 0,0:00:01.00,0:00:02.00,Default,,0,0,0,,Hi", null],
    ["<tt xmlns='http://www.w3.org/ns/ttml'></tt>", null],
  ])("reads %j as %s", (text, format) => {
    expect(captionsFormat(text)).toBe(format);
  });

  it("parses both into the same cues", () => {
    expect(parseCues("1\r\n00:00:01,000 --> 00:00:02,500\r\nHi\r\n")).toEqual(
      parseCues("WEBVTT\n\n00:00:01.000 --> 00:00:02.500\nHi\n"),
    );
  });
});

const mpd = [
  '<?xml version="1.0" encoding="UTF-8"?>',
  '<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT13.000S" minBufferTime="PT2S">',
  '  <Period id="0" start="PT0S">',
  '    <AdaptationSet id="0" contentType="video" mimeType="video/mp4" segmentAlignment="true" startWithSAP="1">',
  '      <Representation id="360p" codecs="avc1.4D401E" bandwidth="900000" width="640" height="360" sar="1:1">',
  "      </Representation>",
  "    </AdaptationSet>",
  '    <AdaptationSet id="1" contentType="audio" mimeType="audio/mp4" segmentAlignment="true" lang="en">',
  "      <Label>English</Label>",
  "    </AdaptationSet>",
  ...dashTextAdaptationSet({ name: "subs-0", label: "English", language: "en", uri: "subtitles/subs-0.vtt" }, 2),
  "  </Period>",
  "</MPD>",
  "",
].join("\n");

describe("withDashTextSets", () => {
  it("replaces the text adaptation sets after the video and audio ones, numbered on from them", () => {
    const out = withDashTextSets(mpd, [
      { name: "subs-0", label: "English", language: "en", uri: "subtitles/subs-0.vtt" },
      { name: "captions-de", label: "Deutsch & <mehr>", language: "de", uri: "subtitles/captions-de.vtt" },
    ]);
    const lines = out.split("\n");
    expect(lines.slice(0, 10)).toEqual(mpd.split("\n").slice(0, 10));
    expect(lines.slice(10)).toEqual([
      '    <AdaptationSet id="2" contentType="text" mimeType="text/vtt" lang="en">',
      "      <Label>English</Label>",
      '      <Representation id="subs-0" bandwidth="256">',
      "        <BaseURL>subtitles/subs-0.vtt</BaseURL>",
      "      </Representation>",
      "    </AdaptationSet>",
      '    <AdaptationSet id="3" contentType="text" mimeType="text/vtt" lang="de">',
      "      <Label>Deutsch &amp; &lt;mehr&gt;</Label>",
      '      <Representation id="captions-de" bandwidth="256">',
      "        <BaseURL>subtitles/captions-de.vtt</BaseURL>",
      "      </Representation>",
      "    </AdaptationSet>",
      "  </Period>",
      "</MPD>",
      "",
    ]);
  });

  it("takes every text set out when no subtitles are left, and keeps the rest as it was", () => {
    const out = withDashTextSets(mpd, []);
    expect(out).not.toContain('contentType="text"');
    expect(out.split("\n")).toEqual([...mpd.split("\n").slice(0, 10), "  </Period>", "</MPD>", ""]);
    expect(withDashTextSets(out, [])).toBe(out);
  });

  it("refuses a document that is not an MPD with one Period", () => {
    expect(() => withDashTextSets("<html></html>", [])).toThrow(DashManifestError);
  });
});
