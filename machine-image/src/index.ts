/** What other workspaces (the local cloud, tests) use from the machine image. */
export { buildMachineBundle } from "./build.ts";
export { type Config, ConfigError, loadConfig, requiredEnv } from "./config.ts";
export { type LoopExit, runMachineLoop } from "./loop.ts";
export { attemptPrefix, manifestKey, outputPrefix, packagePaths } from "./package/layout.ts";
