/** Starts or creates machines for queued work after the API enqueued a job. */
import type { Context } from "hono";
import { admitMachines } from "../admission/index.ts";
import { createFlyClient } from "../fly/client.ts";
import { inBackground } from "./background.ts";
import type { AppEnv } from "./context.ts";

export const admitInBackground = (c: Context<AppEnv>): Promise<void> =>
  inBackground(c, "admission", () => {
    const settings = c.get("settings");
    return admitMachines(settings, c.get("redis"), createFlyClient(settings), Date.now());
  });
