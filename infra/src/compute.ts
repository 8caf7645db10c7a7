import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { FlyApp } from "./fly-app.ts";

export interface ComputeArgs {
  appName: pulumi.Input<string>;
  orgSlug: pulumi.Input<string>;
  flyApiBaseUrl: pulumi.Input<string>;
  flyApiToken: pulumi.Input<string>;
  /** Dockerfile path relative to the repo root, the Docker build context (the program's directory). */
  dockerfile: string;
  /** Hash of the image's sources (`imageSourceHash`): a new hash builds and pushes a new image. */
  sourceHash: pulumi.Input<string>;
}

/**
 * The Fly app the control plane creates machines in, and the FFmpeg image they run, pushed to
 * Fly's registry and referenced by digest so a machine never runs a tag that moved.
 */
export class Compute extends pulumi.ComponentResource {
  readonly app: FlyApp;
  readonly appName: pulumi.Output<string>;
  /** `registry.fly.io/<app>@sha256:…`: `MACHINE_IMAGE`. */
  readonly imageRef: pulumi.Output<string>;
  readonly imageDigest: pulumi.Output<string>;

  constructor(name: string, args: ComputeArgs, opts?: pulumi.ComponentResourceOptions) {
    super("tcoder:index:Compute", name, {}, opts);
    this.app = new FlyApp(
      `${name}-app`,
      { name: args.appName, orgSlug: args.orgSlug, apiBaseUrl: args.flyApiBaseUrl, apiToken: args.flyApiToken },
      { parent: this },
    );
    this.appName = this.app.name;

    const tag = pulumi.interpolate`registry.fly.io/${this.app.name}:${pulumi.output(args.sourceHash).apply((h) => h.slice(0, 16))}`;
    // Runs in the program's directory (the repo root), so no checkout path enters the inputs and a
    // clone elsewhere diffs clean. Build logs go to stderr; stdout is exactly the pushed digest
    // reference, taken from this push (RepoDigests may list another registry's digest first).
    const image = new command.local.Command(
      `${name}-image`,
      {
        create: imageBuildScript,
        environment: {
          IMAGE: tag,
          DOCKERFILE: args.dockerfile,
          FLY_API_TOKEN: pulumi.secret(args.flyApiToken),
        },
        triggers: [args.sourceHash, this.app.name],
        logging: "stderr",
      },
      { parent: this, dependsOn: [this.app] },
    );
    // The command provider marks every output secret when any input is (the token is); a digest
    // reference is no secret, and the worker binds it as plain text.
    this.imageRef = pulumi.unsecret(image.stdout).apply((out) => parseDigestRef(out));
    this.imageDigest = this.imageRef.apply((ref) => ref.slice(ref.indexOf("@") + 1));

    this.registerOutputs({ appName: this.appName, imageRef: this.imageRef, imageDigest: this.imageDigest });
  }
}

/**
 * Builds `$DOCKERFILE` for linux/amd64, pushes it as `$IMAGE` and prints `<repository>@<digest>`.
 * Docker's buildx adds provenance and SBOM attestations by default, which makes the push an image
 * index that Fly's registry refuses; podman adds none and has no such flags. The digest is the one
 * this push reported.
 */
export const imageBuildScript = [
  "set -eu",
  // CONTAINER_CLI=podman where podman is installed without its `docker` alias.
  // biome-ignore lint/suspicious/noTemplateCurlyInString: a shell parameter expansion
  'docker() { command "${CONTAINER_CLI:-docker}" "$@"; }',
  'printf %s "$FLY_API_TOKEN" | docker login registry.fly.io --username x --password-stdin >&2',
  "if docker --version 2>/dev/null | grep -qi podman; then engine=podman; else engine=docker; fi",
  'if [ "$engine" = docker ]; then attestations="--provenance=false --sbom=false"; else attestations=""; fi',
  'docker build --platform linux/amd64 $attestations --file "$DOCKERFILE" --tag "$IMAGE" . >&2',
  'if [ "$engine" = podman ]; then',
  "  digestfile=$(mktemp)",
  '  docker push --digestfile "$digestfile" "$IMAGE" >&2',
  '  digest=$(cat "$digestfile"); rm -f "$digestfile"',
  "else",
  '  pushed=$(docker push "$IMAGE" 2>&1) || { printf "%s\\n" "$pushed" >&2; exit 1; }',
  '  printf "%s\\n" "$pushed" >&2',
  '  digest=$(printf "%s\\n" "$pushed" | grep -o "digest: sha256:[0-9a-f]*" | tail -n 1 | cut -d " " -f 2)',
  "fi",
  'if [ -z "$digest" ]; then echo "$engine push reported no digest for $IMAGE" >&2; exit 1; fi',
  // biome-ignore lint/suspicious/noTemplateCurlyInString: a shell parameter expansion
  'printf "%s@%s\\n" "${IMAGE%:*}" "$digest"',
].join("\n");

/** `registry.fly.io/app@sha256:<64 hex>` from the build command's stdout, or a clear error. */
export function parseDigestRef(stdout: string): string {
  const ref = stdout.trim().split("\n").at(-1)?.trim() ?? "";
  if (!/^[\w.-]+(?::\d+)?\/[\w./-]+@sha256:[0-9a-f]{64}$/.test(ref)) {
    throw new Error(`image build printed no digest reference (want registry.fly.io/<app>@sha256:…), got: ${ref}`);
  }
  return ref;
}
