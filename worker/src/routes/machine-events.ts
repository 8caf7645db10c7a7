/**
 * `POST /v1/machine-events`: machines report claim, progress, heartbeat and outcome here.
 * The raw body is verified against `tcoder-signature` before it is parsed, so a forged or stale
 * event changes nothing. Replays are harmless: state transitions are compare-and-set.
 */
import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import { enqueueCallback } from "../callbacks/index.ts";
import { MachineEvent, MachineEventResponse, SIGNATURE_HEADER, verifySignature } from "../contract/index.ts";
import { admitInBackground } from "../http/admission.ts";
import { inBackground } from "../http/background.ts";
import type { AppEnv } from "../http/context.ts";
import { invalidRequest, validationHook } from "../http/errors.ts";
import { ProblemError, problemContent } from "../http/problem.ts";
import { applyMachineEvent } from "../state/index.ts";

const route = createRoute({
  method: "post",
  path: "/",
  summary: "Signed job events from transcoding machines",
  description: `Signed with MACHINE_EVENTS_SECRET in the \`${SIGNATURE_HEADER}\` header (t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">).`,
  request: {
    headers: z.object({ [SIGNATURE_HEADER]: z.string().openapi({ example: "t=1767000000,v1=5f2b…" }) }),
    body: {
      required: true,
      content: {
        "application/json": { schema: z.discriminatedUnion("type", MachineEvent.options).openapi("MachineEvent") },
      },
    },
  },
  responses: {
    200: {
      description: "Accepted; `abort` tells the machine to drop the job",
      content: { "application/json": { schema: z.object(MachineEventResponse.shape).openapi("MachineEventResponse") } },
    },
    400: problemContent("invalid_request or malformed_json"),
    401: problemContent("invalid_signature"),
  },
});

export const machineEvents = new OpenAPIHono<AppEnv>({ defaultHook: validationHook });

// Registered for the document only: a JSON validator would consume the body before the
// signature check, and the signature is over the exact raw bytes.
machineEvents.openAPIRegistry.registerPath(route);

machineEvents.post("/", async (c) => {
  const settings = c.get("settings");
  const rawBody = await c.req.text();
  const check = await verifySignature(settings.MACHINE_EVENTS_SECRET, rawBody, c.req.header(SIGNATURE_HEADER));
  if (!check.ok) throw new ProblemError("invalid_signature", { detail: `signature ${check.reason}` });

  let json: unknown;
  try {
    json = JSON.parse(rawBody);
  } catch {
    throw new ProblemError("malformed_json", { detail: "the request body is not valid JSON" });
  }
  const parsed = MachineEvent.safeParse(json);
  if (!parsed.success) return invalidRequest(parsed.error, "json");
  const event = parsed.data;

  const outcome = await applyMachineEvent(c.get("redis"), event, Date.now());
  const terminalJob = outcome.becameTerminal ? outcome.job : null;
  if (terminalJob) await inBackground(c, "callback_enqueue", () => enqueueCallback(c.env, terminalJob));
  // A released or retryably failed job (or task) is back in the queue and a machine slot may be
  // free; a split queued a job's tasks for every machine under the cap.
  const queuedWork =
    outcome.job?.state === "pending" ||
    (outcome.action === "continue" &&
      (event.type === "split" || (event.task !== undefined && (event.type === "failed" || event.type === "released"))));
  if (queuedWork) await admitInBackground(c);
  const response: MachineEventResponse = { ok: true, action: outcome.action };
  return c.json(response, 200);
});
