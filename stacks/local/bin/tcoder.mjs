#!/usr/bin/env node
// The CLI is TypeScript run from source: tsx registers the loader, then the real entry runs.
import { register } from "tsx/esm/api";

// We run on Node 20 on purpose (see README); the SDK's notice about its future Node 22 floor is noise here.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
register();
await import("../src/cli/main.ts");
