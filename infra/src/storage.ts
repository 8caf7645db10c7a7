import { createHash } from "node:crypto";
import * as cloudflare from "@pulumi/cloudflare";
import * as pulumi from "@pulumi/pulumi";
import { type BucketCorsRule, bucketCors, uploadNotification } from "@tcoder/worker/bindings";
import type { DomainConfig } from "./config.ts";

export interface StorageArgs {
  accountId: pulumi.Input<string>;
  inputBucketName: pulumi.Input<string>;
  outputBucketName: pulumi.Input<string>;
  /** R2 location hint (apac, eeur, enam, weur, wnam, oc). */
  location: pulumi.Input<string>;
  /** Browser origins allowed to PUT uploads and GET outputs. */
  corsOrigins: pulumi.Input<pulumi.Input<string>[]>;
  /** Delete uploaded sources this many days after upload; unset keeps them. */
  inputExpiryDays?: pulumi.Input<number>;
  abortMultipartAfterDays: pulumi.Input<number>;
  /** Serve outputs from this hostname instead of the bucket's r2.dev domain. */
  outputsDomain?: DomainConfig;
}

const day = 86_400;
/**
 * What the dashboard's "Object Read & Write" R2 token grants, scoped to named buckets. Permission
 * group ids are global and fixed (`GET /user/tokens/permission_groups` lists them); naming them
 * here instead of looking them up keeps `pulumi preview` free of API calls.
 */
export const objectPermissionGroups = {
  "Workers R2 Storage Bucket Item Read": "6a018a9f2fc74eb6b293b0c548f38b39",
  "Workers R2 Storage Bucket Item Write": "2efd5506f9c8494dacb1fa10a3e7d5b6",
} as const;

/** The input and output R2 buckets, their public read domain and the S3 credentials machines use. */
export class Storage extends pulumi.ComponentResource {
  readonly inputBucket: cloudflare.R2Bucket;
  readonly outputBucket: cloudflare.R2Bucket;
  /** Public base URL of the output bucket: `OUTPUTS_BASE_URL`. */
  readonly outputsBaseUrl: pulumi.Output<string>;
  readonly s3Endpoint: pulumi.Output<string>;
  /** S3 access key id: the R2 token's id, as Cloudflare documents. */
  readonly accessKeyId: pulumi.Output<string>;
  /** S3 secret key: SHA-256 (hex) of the R2 token's value, as Cloudflare documents. */
  readonly secretAccessKey: pulumi.Output<string>;

  constructor(name: string, args: StorageArgs, opts?: pulumi.ComponentResourceOptions) {
    super("tcoder:index:Storage", name, {}, opts);
    const parent = { parent: this };
    const { accountId } = args;

    this.inputBucket = new cloudflare.R2Bucket(
      `${name}-inputs`,
      { accountId, name: args.inputBucketName, location: args.location, storageClass: "Standard" },
      parent,
    );
    this.outputBucket = new cloudflare.R2Bucket(
      `${name}-outputs`,
      { accountId, name: args.outputBucketName, location: args.location, storageClass: "Standard" },
      parent,
    );

    // What browsers may do with each bucket is declared once, in bindings.ts (the local store enforces it too).
    const cors = (resourceName: string, bucket: cloudflare.R2Bucket, rule: BucketCorsRule) =>
      new cloudflare.R2BucketCors(
        resourceName,
        {
          accountId,
          bucketName: bucket.name,
          rules: [
            {
              id: rule.id,
              allowed: { methods: [...rule.methods], origins: args.corsOrigins, headers: [...rule.headers] },
              exposeHeaders: [...rule.exposeHeaders],
              maxAgeSeconds: rule.maxAgeSeconds,
            },
          ],
        },
        parent,
      );
    cors(`${name}-inputs-cors`, this.inputBucket, bucketCors.INPUT_BUCKET);
    cors(`${name}-outputs-cors`, this.outputBucket, bucketCors.OUTPUT_BUCKET);

    const abortIncompleteUploads = (id: string) => ({
      id,
      enabled: true,
      conditions: { prefix: "" },
      abortMultipartUploadsTransition: {
        condition: { type: "Age", maxAge: pulumi.output(args.abortMultipartAfterDays).apply((d) => d * day) },
      },
    });
    const inputRules: pulumi.Input<cloudflare.types.input.R2BucketLifecycleRule>[] = [
      abortIncompleteUploads("abort-incomplete-uploads"),
    ];
    if (args.inputExpiryDays !== undefined) {
      inputRules.push({
        id: "expire-sources",
        enabled: true,
        conditions: { prefix: uploadNotification.prefix },
        deleteObjectsTransition: {
          condition: { type: "Age", maxAge: pulumi.output(args.inputExpiryDays).apply((d) => d * day) },
        },
      });
    }
    new cloudflare.R2BucketLifecycle(
      `${name}-inputs-lifecycle`,
      { accountId, bucketName: this.inputBucket.name, rules: inputRules },
      parent,
    );
    new cloudflare.R2BucketLifecycle(
      `${name}-outputs-lifecycle`,
      { accountId, bucketName: this.outputBucket.name, rules: [abortIncompleteUploads("abort-incomplete-uploads")] },
      parent,
    );

    // Only the output bucket is public: players read packages without credentials.
    if (args.outputsDomain) {
      const domain = new cloudflare.R2CustomDomain(
        `${name}-outputs-domain`,
        {
          accountId,
          bucketName: this.outputBucket.name,
          domain: args.outputsDomain.hostname,
          zoneId: args.outputsDomain.zoneId,
          enabled: true,
          minTls: "1.2",
        },
        parent,
      );
      this.outputsBaseUrl = pulumi.interpolate`https://${domain.domain}`;
    } else {
      const domain = new cloudflare.R2ManagedDomain(
        `${name}-outputs-r2dev`,
        { accountId, bucketName: this.outputBucket.name, enabled: true },
        parent,
      );
      this.outputsBaseUrl = pulumi.interpolate`https://${domain.domain}`;
    }

    // One token, object read/write on exactly these two buckets; its S3 form is what machines
    // and the worker's presigner use.
    const permissionGroups = Object.values(objectPermissionGroups).map((id) => ({ id }));
    const bucketResource = (bucket: cloudflare.R2Bucket) =>
      pulumi.interpolate`com.cloudflare.edge.r2.bucket.${accountId}_default_${bucket.name}`;
    const token = new cloudflare.AccountToken(
      `${name}-s3-token`,
      {
        accountId,
        name: pulumi.interpolate`tcoder objects: ${this.inputBucket.name}, ${this.outputBucket.name}`,
        policies: [
          {
            effect: "allow",
            permissionGroups,
            resources: pulumi
              .all([bucketResource(this.inputBucket), bucketResource(this.outputBucket)])
              .apply(([input, output]) => JSON.stringify({ [input]: "*", [output]: "*" })),
          },
        ],
      },
      { ...parent, additionalSecretOutputs: ["value"] },
    );
    this.accessKeyId = pulumi.secret(token.id);
    this.secretAccessKey = pulumi.secret(token.value.apply(s3SecretFromTokenValue));
    this.s3Endpoint = pulumi.interpolate`https://${accountId}.r2.cloudflarestorage.com`;

    this.registerOutputs({
      inputBucket: this.inputBucket.name,
      outputBucket: this.outputBucket.name,
      outputsBaseUrl: this.outputsBaseUrl,
      s3Endpoint: this.s3Endpoint,
      accessKeyId: this.accessKeyId,
      secretAccessKey: this.secretAccessKey,
    });
  }
}

/**
 * The S3 secret key of an R2 token. An empty value (a provider or API that withheld it) would give
 * `sha256("")`, a key that authenticates nothing, so the deploy stops here instead.
 */
export function s3SecretFromTokenValue(value: string | undefined): string {
  if (!value) {
    throw new Error(
      "the R2 token's value came back empty, so no S3 secret key can be derived; " +
        "re-create the token (pulumi up --replace on its URN) rather than deploy machines that cannot authenticate",
    );
  }
  return sha256Hex(value);
}

export function sha256Hex(value: string | Uint8Array): string {
  return createHash("sha256").update(value).digest("hex");
}
