// Pulumi loads a policy pack with require(); the pack is ESM TypeScript with `.ts` imports, which
// tsx loads (as for the program, see Pulumi.yaml). The analyzer awaits the exported promise.
module.exports = import("tsx/esm/api").then(({ register }) => {
  register();
  return import("./index.ts");
});
