/**
 * R2 event notification messages, as Cloudflare delivers them to a queue consumer.
 * https://developers.cloudflare.com/r2/buckets/event-notifications/#message-format
 */
import { z } from "zod";

export const r2ObjectCreateActions = ["PutObject", "CompleteMultipartUpload", "CopyObject"] as const;

export const R2EventNotification = z.object({
  account: z.string(),
  action: z.enum([...r2ObjectCreateActions, "DeleteObject", "LifecycleDeletion"]),
  bucket: z.string(),
  object: z.object({
    key: z.string(),
    size: z.number().int().nonnegative().optional(),
    eTag: z.string().optional(),
  }),
  eventTime: z.string(),
  copySource: z.object({ bucket: z.string(), object: z.string() }).optional(),
});
export type R2EventNotification = z.infer<typeof R2EventNotification>;
