import { PolicyPack } from "@pulumi/policy";
import { policies } from "./policies.ts";

// Constructing the pack starts its gRPC server; tests import ./policies.ts instead.
new PolicyPack("tcoder", {
  description: "tcoder guardrails: secrets, public buckets, dead-letter queues, cron, machine bounds, regions",
  policies,
});
