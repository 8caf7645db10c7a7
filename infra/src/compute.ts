import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { FlyApp } from "./fly-app.ts";

export interface ComputeArgs {
  appName: pulumi.Input<string>;
  orgSlug: pulumi.Input<string>;
  flyApiBaseUrl: pulumi.Input<string>;
  flyApiToken: pulumi.Input<string>;
  /** Repo root: the Docker build context (the image also copies worker modules). */
  repoRoot: string;
  /** Dockerfile path relative to repoRoot. */
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
    // Build logs go to stderr so stdout is exactly the pushed digest reference.
    const image = new command.local.Command(
      `${name}-image`,
      {
        dir: args.repoRoot,
        create: [
          "set -eu",
          'printf %s "$FLY_API_TOKEN" | docker login registry.fly.io --username x --password-stdin >&2',
          'docker build --platform linux/amd64 --file "$DOCKERFILE" --tag "$IMAGE" . >&2',
          'docker push "$IMAGE" >&2',
          "docker inspect --format '{{index .RepoDigests 0}}' \"$IMAGE\"",
        ].join("\n"),
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
    this.imageRef = image.stdout.apply((out) => parseDigestRef(out));
    this.imageDigest = this.imageRef.apply((ref) => ref.slice(ref.indexOf("@") + 1));

    this.registerOutputs({ appName: this.appName, imageRef: this.imageRef, imageDigest: this.imageDigest });
  }
}

/** `registry.fly.io/app@sha256:<64 hex>` from the build command's stdout, or a clear error. */
export function parseDigestRef(stdout: string): string {
  const ref = stdout.trim().split("\n").at(-1)?.trim() ?? "";
  if (!/^[\w.-]+(?::\d+)?\/[\w./-]+@sha256:[0-9a-f]{64}$/.test(ref)) {
    throw new Error(`image build printed no digest reference (want registry.fly.io/<app>@sha256:…), got: ${ref}`);
  }
  return ref;
}
