/**
 * The machine's signed events: a control plane that is redeploying (network errors, 5xx, 429) is
 * tried again with the repo's backoff; a refusal is final at once.
 */
import { type MachineEvent, SIGNATURE_HEADER } from "@tcoder/worker/contract";
import { describe, expect, it } from "vitest";
import { ControlPlaneRefusedError, createControlPlane } from "../src/control-plane.ts";

const event: MachineEvent = { type: "heartbeat", jobId: "job_1", machineId: "m1", attempt: 1 };

/** A control plane answering each POST with the next of `answers` (an Error is a network failure). */
function scripted(answers: (Response | Error)[]) {
  const signatures: (string | null)[] = [];
  const fetch: typeof globalThis.fetch = async (_input, init) => {
    signatures.push(new Headers(init?.headers).get(SIGNATURE_HEADER));
    const next = answers.shift();
    if (next === undefined) throw new Error("no more answers scripted");
    if (next instanceof Error) throw next;
    return next;
  };
  const controlPlane = createControlPlane({
    baseUrl: "http://control-plane.test",
    secret: "s".repeat(32),
    fetch,
    baseDelayMs: 1,
    maxDelayMs: 2,
  });
  return { controlPlane, signatures };
}

const ok = () => Response.json({ ok: true, action: "continue" });

describe("control plane events", () => {
  it("are tried again through network errors, 5xx and 429, each try signed anew", async () => {
    const { controlPlane, signatures } = scripted([
      new TypeError("fetch failed"),
      new Response("bad gateway", { status: 502 }),
      new Response("slow down", { status: 429 }),
      ok(),
    ]);
    await expect(controlPlane.send(event)).resolves.toEqual({ ok: true, action: "continue" });
    expect(signatures).toHaveLength(4);
    expect(signatures.every((signature) => signature?.startsWith("t="))).toBe(true);
  });

  it("are refused at once by a 4xx, which is not tried again", async () => {
    const { controlPlane, signatures } = scripted([new Response("bad signature", { status: 401 }), ok()]);
    await expect(controlPlane.send(event)).rejects.toBeInstanceOf(ControlPlaneRefusedError);
    expect(signatures).toHaveLength(1);
  });

  it("give up after their attempts, naming the event and keeping the last failure as the cause", async () => {
    const { controlPlane, signatures } = scripted(Array.from({ length: 5 }, () => new Response("", { status: 503 })));
    const error = await controlPlane.send(event, { attempts: 3 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toBe("could not deliver heartbeat for job job_1 after 3 attempts");
    expect(((error as Error).cause as Error).message).toBe("control plane answered 503");
    expect(signatures).toHaveLength(3);
  });
});
