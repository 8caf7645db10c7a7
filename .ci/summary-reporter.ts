import type { Reporter, TestModule } from "vitest/node";

/**
 * Prints one plain closing line ("tests: N passed, N failed, N skipped") after vitest's own
 * summary, so any CI log reader can see what ran without parsing vitest's table. It is written on
 * process exit because vitest prints its summary after the reporters' `onTestRunEnd` hooks.
 */
export default class SummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    let passed = 0;
    let failed = 0;
    let skipped = 0;
    for (const module of testModules) {
      for (const test of module.children.allTests()) {
        const state = test.result().state;
        if (state === "passed") passed++;
        else if (state === "failed") failed++;
        else skipped++;
      }
    }
    // stdout to a pipe, file or terminal is synchronous on Linux, so this still lands on exit.
    process.once("exit", () =>
      process.stdout.write(`\ntests: ${passed} passed, ${failed} failed, ${skipped} skipped\n`),
    );
  }
}
