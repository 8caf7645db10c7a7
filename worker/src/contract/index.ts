export * from "./addresses.ts";
export * from "./job.ts";
export * from "./language.ts";
export * from "./machine-events.ts";
export * from "./playback.ts";
export * from "./presets.ts";
export * from "./r2-events.ts";
export * from "./signing.ts";
