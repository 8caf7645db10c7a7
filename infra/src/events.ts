import * as cloudflare from "@pulumi/cloudflare";
import * as pulumi from "@pulumi/pulumi";
import { queues, stackQueueName, uploadNotification } from "@tcoder/worker/bindings";

export type QueueKey = keyof typeof queues;

export interface EventsArgs {
  accountId: pulumi.Input<string>;
  /** The stack's name prefix: queue names are account-wide, so each stack's carry its own. */
  namePrefix: string;
  /** The bucket whose object-created events feed the uploads queue (`uploadNotification.bucketVar`). */
  notificationBucketName: pulumi.Input<string>;
}

export interface QueuePair {
  queue: cloudflare.Queue;
  deadLetterQueue: cloudflare.Queue;
}

/**
 * Every queue the binding module declares, each with its dead-letter queue, and the R2 rule that
 * turns uploads into messages. Consumers belong to the control plane: they name its script.
 */
export class Events extends pulumi.ComponentResource {
  readonly queues: Record<QueueKey, QueuePair>;
  readonly notification: cloudflare.R2BucketEventNotification;

  constructor(name: string, args: EventsArgs, opts?: pulumi.ComponentResourceOptions) {
    super("tcoder:index:Events", name, {}, opts);
    const { accountId } = args;

    const created = {} as Record<QueueKey, QueuePair>;
    for (const [key, declared] of Object.entries(queues) as [QueueKey, (typeof queues)[QueueKey]][]) {
      created[key] = {
        queue: new cloudflare.Queue(
          `${name}-${key}`,
          { accountId, queueName: stackQueueName(args.namePrefix, declared.name) },
          { parent: this },
        ),
        deadLetterQueue: new cloudflare.Queue(
          `${name}-${key}-dlq`,
          { accountId, queueName: stackQueueName(args.namePrefix, declared.deadLetterQueue) },
          { parent: this },
        ),
      };
    }
    this.queues = created;

    const targetKey = (Object.keys(queues) as QueueKey[]).find((key) => queues[key].name === uploadNotification.queue);
    const target = targetKey && created[targetKey];
    if (!target) throw new Error(`uploadNotification.queue ${uploadNotification.queue} is not a declared queue`);
    this.notification = new cloudflare.R2BucketEventNotification(
      `${name}-uploads-notification`,
      {
        accountId,
        bucketName: args.notificationBucketName,
        queueId: target.queue.queueId,
        rules: [
          {
            actions: [...uploadNotification.actions],
            prefix: uploadNotification.prefix,
            description: "uploaded sources start their jobs",
          },
        ],
      },
      { parent: this },
    );

    this.registerOutputs({
      queueNames: Object.fromEntries(Object.entries(created).map(([k, pair]) => [k, pair.queue.queueName])),
    });
  }
}
