#!/usr/bin/env node
// The CLI is TypeScript run from source: tsx registers the loader, then the real entry runs.
import { register } from "tsx/esm/api";

register();
await import("../src/cli/main.ts");
