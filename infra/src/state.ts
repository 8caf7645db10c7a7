import * as pulumi from "@pulumi/pulumi";
import * as upstash from "@upstash/pulumi";

export interface StateArgs {
  databaseName: pulumi.Input<string>;
  /** Upstash primary region (us-east-1, eu-west-1, …); pick the one nearest the Fly region. */
  primaryRegion: pulumi.Input<string>;
}

/** The Upstash Redis database holding jobs, the queue and machine leases (REST, TLS). */
export class State extends pulumi.ComponentResource {
  readonly database: upstash.RedisDatabase;
  readonly restUrl: pulumi.Output<string>;
  readonly restToken: pulumi.Output<string>;

  constructor(name: string, args: StateArgs, opts?: pulumi.ComponentResourceOptions) {
    super("tcoder:index:State", name, {}, opts);
    this.database = new upstash.RedisDatabase(
      `${name}-redis`,
      {
        databaseName: args.databaseName,
        // Upstash creates new databases as "global" with a primary region.
        region: "global",
        primaryRegion: args.primaryRegion,
        tls: true,
        // Jobs and leases must never be evicted to make room.
        eviction: false,
      },
      { parent: this, additionalSecretOutputs: ["restToken", "password", "readOnlyRestToken"] },
    );
    this.restUrl = pulumi.secret(pulumi.interpolate`https://${this.database.endpoint}`);
    this.restToken = pulumi.secret(this.database.restToken);
    this.registerOutputs({ restUrl: this.restUrl, restToken: this.restToken });
  }
}
