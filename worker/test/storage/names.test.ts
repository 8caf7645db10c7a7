import { describe, expect, it } from "vitest";
import { filenameProblem, inputKeyProblem, safeFileName } from "../../src/storage/names.ts";

describe("client file names", () => {
  it.each([
    ["../../etc/passwd.mp4", "path separators"],
    ["dir/clip.mp4", "path separators"],
    ["dir\\clip.mp4", "path separators"],
    ["clip\u0000.mp4", "control characters"],
    ["clip\n.mp4", "control characters"],
    ["..", "name a file"],
    ["", "empty"],
    [`${"é".repeat(128)}.mp4`, "255 bytes"],
  ])("refuses %j", (name, why) => {
    expect(filenameProblem(name)).toContain(why);
  });

  it("accepts ordinary and unicode names", () => {
    expect(filenameProblem("Urlaub am Meer – Tag 1.mov")).toBeNull();
    expect(filenameProblem("..mp4")).toBeNull();
  });
});

describe("safe names used in object keys", () => {
  it.each([
    ["holiday.mp4", "holiday.mp4"],
    ["Café Ünïcode 東京.MOV", "Café_Ünïcode_東京.mov"],
    ["..mp4", "upload.mp4"],
    ["....hidden.mkv", "hidden.mkv"],
    ["%2e%2e%2fclip.mp4", "2e_2e_2fclip.mp4"],
    ["a?b#c&d=e.webm", "a_b_c_d_e.webm"],
    ["no-extension", "no-extension"],
    ["weird.ext with space", "weird_ext_with_space"],
    ["🎬 trailer 🎬.mp4", "trailer.mp4"],
  ])("%j → %j", (name, expected) => {
    expect(safeFileName(name)).toBe(expected);
  });

  it("never yields a dot segment, a separator or URL syntax", () => {
    for (const name of ["../x", "./", ".", "a/../b", "\\\\server\\share", "x%00y", "<script>.mp4"]) {
      const safe = safeFileName(name);
      expect(safe).not.toMatch(/[/\\%?#<>]|^\./);
      expect(safe.length).toBeGreaterThan(0);
    }
  });
});

describe("input keys named by clients", () => {
  it("accepts keys under inputs/", () => {
    expect(inputKeyProblem("inputs/job_x/clip.mp4")).toBeNull();
  });
  it("counts a key's length in UTF-8 bytes, as the store does", () => {
    expect(inputKeyProblem(`inputs/${"é".repeat(508)}`)).toBeNull(); // 1,023 bytes
    expect(inputKeyProblem(`inputs/${"é".repeat(509)}`)).toContain("1024 bytes"); // 509 characters, 1,025 bytes
  });
  it.each(["clip.mp4", "/inputs/x.mp4", "inputs/../outputs/x", "inputs//x", "inputs/./x", "inputs/a\\b"])(
    "refuses %j",
    (key) => {
      expect(inputKeyProblem(key)).not.toBeNull();
    },
  );
});
