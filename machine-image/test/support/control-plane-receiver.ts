/**
 * A stand-in for the control plane's `POST /v1/machine-events`: verifies each signature with the
 * contract's verifySignature, applies the event to real Redis with the real state functions, answers
 * with the resulting action, and records what arrived.
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { MACHINE_EVENTS_PATH, MachineEvent, SIGNATURE_HEADER, verifySignature } from "@tcoder/worker/contract";
import { applyMachineEvent, type StateRedis } from "@tcoder/worker/state";

export interface ControlPlaneReceiver {
  url: string;
  events: MachineEvent[];
  badSignatures: number;
  waitFor(match: (event: MachineEvent) => boolean, timeoutMs?: number): Promise<MachineEvent>;
  stop(): Promise<void>;
}

export async function startControlPlaneReceiver(redis: StateRedis, secret: string): Promise<ControlPlaneReceiver> {
  const events: MachineEvent[] = [];
  const waiters: { match: (e: MachineEvent) => boolean; resolve: (e: MachineEvent) => void }[] = [];
  const receiver = { badSignatures: 0 };
  const server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const raw = Buffer.concat(chunks).toString("utf8");
    if (req.method !== "POST" || req.url !== MACHINE_EVENTS_PATH) return res.writeHead(404).end();
    const check = await verifySignature(secret, raw, req.headers[SIGNATURE_HEADER] as string | undefined);
    if (!check.ok) {
      receiver.badSignatures++;
      return res
        .writeHead(401, { "content-type": "application/problem+json" })
        .end(JSON.stringify({ code: check.reason }));
    }
    const parsed = MachineEvent.safeParse(JSON.parse(raw));
    if (!parsed.success) return res.writeHead(400).end(parsed.error.message);
    const event = parsed.data;
    events.push(event);
    const outcome = await applyMachineEvent(redis, event, Date.now());
    res
      .writeHead(200, { "content-type": "application/json" })
      .end(JSON.stringify({ ok: true, action: outcome.action }));
    for (const waiter of [...waiters])
      if (waiter.match(event)) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve(event);
      }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    events,
    get badSignatures() {
      return receiver.badSignatures;
    },
    waitFor(match, timeoutMs = 60_000) {
      const seen = events.find(match);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("timed out waiting for a machine event")), timeoutMs);
        waiters.push({
          match,
          resolve: (e) => {
            clearTimeout(timer);
            resolve(e);
          },
        });
      });
    },
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
