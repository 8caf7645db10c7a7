/**
 * A stable text rendering of the mocked resource graph: one block per resource under its
 * component, inputs flattened to `path = value`, secrets shown as [secret], and values that
 * change with unrelated commits (bundle hash, image source hash, checkout path) named instead.
 */
import type { Plain, ProgramRun, RegisteredResource } from "./mock-program.ts";

/** Array elements with one of these keys are addressed by it, so inserting one shifts nothing. */
const elementKeys = ["name", "id", "cron"] as const;

function flatten(value: Plain, path: string, lines: string[], omit?: string): void {
  if (Array.isArray(value)) {
    if (value.length === 0) lines.push(`${path} = []`);
    value.forEach((element, index) => {
      const keyName =
        element && typeof element === "object" && !Array.isArray(element)
          ? elementKeys.find((k) => typeof element[k] === "string")
          : undefined;
      const key = keyName ? (element as Record<string, Plain>)[keyName] : index;
      flatten(element, `${path}[${String(key)}]`, lines, keyName);
    });
    return;
  }
  if (value !== null && typeof value === "object") {
    const keys = Object.keys(value)
      .filter((key) => key !== omit)
      .sort();
    // An element addressed only by its key (`permissionGroups[<id>]`) still shows up.
    if (keys.length === 0) lines.push(omit ? path : `${path} = {}`);
    for (const key of keys) flatten(value[key] as Plain, path ? `${path}.${key}` : key, lines);
    return;
  }
  lines.push(`${path} = ${JSON.stringify(value)}`);
}

export function renderPlan(run: ProgramRun, volatile: Record<string, string>): string {
  const redact = (text: string) =>
    Object.entries(volatile)
      .filter(([value]) => value.length > 0)
      .sort(([a], [b]) => b.length - a.length)
      .reduce((acc, [value, label]) => acc.split(value).join(label), text);

  const children = new Map<string | undefined, RegisteredResource[]>();
  for (const resource of run.resources) {
    const siblings = children.get(resource.parentUrn) ?? [];
    siblings.push(resource);
    children.set(resource.parentUrn, siblings);
  }
  const order = (a: RegisteredResource, b: RegisteredResource) =>
    a.type.localeCompare(b.type) || a.name.localeCompare(b.name);

  const lines = [
    `# pulumi plan of stack "${run.stack}" under mocks (secrets redacted).`,
    "# Regenerate: UPDATE_PLAN_SNAPSHOT=1 npx vitest run --project infra test/plan-snapshot.test.ts",
    "",
  ];
  const render = (resource: RegisteredResource, depth: number) => {
    const indent = "  ".repeat(depth);
    lines.push(`${indent}${resource.type} "${resource.name}"`);
    const props: string[] = [];
    flatten(resource.inputs, "", props);
    for (const prop of props) if (prop !== " = {}") lines.push(`${indent}  ${prop}`);
    for (const child of (children.get(resource.urn) ?? []).sort(order)) render(child, depth + 1);
  };
  for (const root of (children.get(undefined) ?? []).sort(order)) render(root, 0);

  lines.push("", "outputs:");
  for (const key of Object.keys(run.outputs).sort()) {
    const output = run.outputs[key];
    if (!output) continue;
    const value = output.secret ? "[secret]" : (output.value as Plain);
    const props: string[] = [];
    flatten(value, key, props);
    for (const prop of props) lines.push(`  ${prop}`);
  }
  return `${redact(lines.join("\n"))}\n`;
}
