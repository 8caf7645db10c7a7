import { execFileSync, spawnSync } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, test } from "vitest";
import { imageBuildScript, parseDigestRef } from "../src/compute.ts";
import { s3SecretFromTokenValue, sha256Hex } from "../src/storage.ts";

// No Docker engine runs here, so a stand-in `docker` on PATH records its arguments and answers as
// the real CLIs do: Docker prints `<tag>: digest: sha256:… size: …` on push and may list another
// registry's digest first in RepoDigests; podman prints no digest but writes --digestfile.
const pushDigest = `sha256:${"1".repeat(64)}`;
const staleDigest = `sha256:${"2".repeat(64)}`;

function fakeCli(engine: "docker" | "podman"): string {
  return `#!/bin/sh
echo "$*" >> "$CALLS"
case "$1" in
  --version) [ "${engine}" = podman ] && echo "podman version 4.3.1" || echo "Docker version 28.2.2, build e6534b4" ;;
  login) cat > /dev/null ;;
  build) ;;
  push)
    if [ "${engine}" = podman ]; then
      [ "$2" = --digestfile ] || { echo "podman push: no --digestfile" >&2; exit 1; }
      printf %s "${pushDigest}" > "$3"
    else
      echo "The push refers to repository [registry.fly.io/app]"
      echo "latest: digest: ${pushDigest} size: 1573"
    fi ;;
  inspect) echo "other.registry/app@${staleDigest}" ;;
esac
`;
}

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function runScript(engine: "docker" | "podman") {
  const dir = mkdtempSync(join(tmpdir(), "tcoder-image-"));
  dirs.push(dir);
  writeFileSync(join(dir, "docker"), fakeCli(engine));
  chmodSync(join(dir, "docker"), 0o755);
  const result = spawnSync("sh", ["-c", imageBuildScript], {
    cwd: dir,
    encoding: "utf8",
    env: {
      PATH: `${dir}:${process.env.PATH}`,
      CALLS: join(dir, "calls"),
      IMAGE: "registry.fly.io/app:0123456789abcdef",
      DOCKERFILE: "machine-image/Dockerfile",
      FLY_API_TOKEN: "fly-token",
    },
  });
  return { ...result, calls: readFileSync(join(dir, "calls"), "utf8").trim().split("\n") };
}

describe("image build and push (the Compute component's command)", () => {
  test("Docker builds without attestations (Fly's registry refuses image indexes) and the digest is the push's", () => {
    const { status, stdout, calls } = runScript("docker");
    expect(status).toBe(0);
    expect(calls).toContain(
      "build --platform linux/amd64 --provenance=false --sbom=false --file machine-image/Dockerfile --tag registry.fly.io/app:0123456789abcdef .",
    );
    expect(stdout.trim()).toBe(`registry.fly.io/app@${pushDigest}`);
    expect(parseDigestRef(stdout)).toBe(`registry.fly.io/app@${pushDigest}`);
  });

  test("podman builds without Docker-only flags and takes the digest from --digestfile", () => {
    const { status, stdout, calls } = runScript("podman");
    expect(status).toBe(0);
    expect(calls).toContain(
      "build --platform linux/amd64 --file machine-image/Dockerfile --tag registry.fly.io/app:0123456789abcdef .",
    );
    expect(stdout.trim()).toBe(`registry.fly.io/app@${pushDigest}`);
  });

  test("the token reaches docker login on stdin, never on a command line", () => {
    const { calls } = runScript("docker");
    expect(calls.find((c) => c.startsWith("login"))).toBe("login registry.fly.io --username x --password-stdin");
    expect(calls.join("\n")).not.toContain("fly-token");
  });

  test("a push that reports no digest fails the step instead of publishing a tag", () => {
    const dir = mkdtempSync(join(tmpdir(), "tcoder-image-"));
    dirs.push(dir);
    writeFileSync(join(dir, "docker"), '#!/bin/sh\n[ "$1" = push ] && echo "pushed, no digest"\nexit 0\n');
    chmodSync(join(dir, "docker"), 0o755);
    const result = spawnSync("sh", ["-c", imageBuildScript], {
      encoding: "utf8",
      env: { PATH: `${dir}:${process.env.PATH}`, IMAGE: "registry.fly.io/app:x", DOCKERFILE: "D", FLY_API_TOKEN: "t" },
    });
    expect(result.status).not.toBe(0);
    expect(result.stderr).toContain("docker push reported no digest for registry.fly.io/app:x");
  });
});

describe("R2 S3 credentials", () => {
  test("the secret key is the SHA-256 of the token value", () => {
    expect(s3SecretFromTokenValue("token-value")).toBe(sha256Hex("token-value"));
    expect(execFileSync("sh", ["-c", "printf %s token-value | sha256sum"], { encoding: "utf8" })).toContain(
      sha256Hex("token-value"),
    );
  });

  test('an empty token value stops the deploy instead of pushing sha256("") as the key', () => {
    expect(() => s3SecretFromTokenValue("")).toThrow(/R2 token's value came back empty/);
    expect(() => s3SecretFromTokenValue(undefined)).toThrow(/R2 token's value came back empty/);
  });
});
