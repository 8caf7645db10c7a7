import { describe, expect, it } from "vitest";
import { checkCallbackUrl } from "../../src/http/callback-url.ts";

const strict = { allowInsecure: false };

describe("callback URLs outside local stacks", () => {
  it("accepts a public https URL", () => {
    expect(checkCallbackUrl("https://hooks.example.com/tcoder?x=1", strict)).toEqual({
      ok: true,
      url: "https://hooks.example.com/tcoder?x=1",
    });
  });

  it.each([
    "http://hooks.example.com/cb",
    "ftp://hooks.example.com/cb",
    "https://localhost/cb",
    "https://api.localhost/cb",
    "https://127.0.0.1/cb",
    "https://127.1/cb",
    "https://0x7f000001/cb",
    "https://10.1.2.3/cb",
    "https://172.16.0.1/cb",
    "https://172.31.255.255/cb",
    "https://192.168.1.1/cb",
    "https://169.254.169.254/latest/meta-data",
    "https://100.64.0.1/cb",
    "https://0.0.0.0/cb",
    "https://[::1]/cb",
    "https://[::]/cb",
    "https://[fe80::1]/cb",
    "https://[fd00::1]/cb",
    "https://[::ffff:127.0.0.1]/cb",
    "https://user:pass@hooks.example.com/cb",
    "not a url",
  ])("refuses %s", (url) => {
    expect(checkCallbackUrl(url, strict).ok).toBe(false);
  });

  it("accepts public addresses next to private ranges", () => {
    expect(checkCallbackUrl("https://172.32.0.1/cb", strict).ok).toBe(true);
    expect(checkCallbackUrl("https://[2606:4700::1111]/cb", strict).ok).toBe(true);
  });
});

describe("callback URLs in local stacks (ALLOW_INSECURE_CALLBACKS)", () => {
  it("accepts plain http to loopback", () => {
    expect(checkCallbackUrl("http://127.0.0.1:8787/cb", { allowInsecure: true }).ok).toBe(true);
  });
  it("still refuses non-http schemes", () => {
    expect(checkCallbackUrl("file:///etc/passwd", { allowInsecure: true }).ok).toBe(false);
  });
});
