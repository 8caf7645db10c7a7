/** A few lines of DOM building instead of a framework. */
type Child = Node | string | number | null | undefined | false;
type Props = Record<string, string | number | boolean | EventListener | undefined>;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Props = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === false) continue;
    if (typeof value === "function") el.addEventListener(name.slice(2).toLowerCase(), value);
    else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, String(value));
  }
  append(el, ...children);
  return el;
}

export function append(el: Element, ...children: Child[]): void {
  for (const child of children)
    if (child !== null && child !== undefined && child !== false)
      el.append(typeof child === "number" ? String(child) : child);
}

export const clear = (el: Element, ...children: Child[]) => {
  el.replaceChildren();
  append(el, ...children);
};

export const percent = (fraction: number) => `${Math.round(Math.max(0, Math.min(1, fraction)) * 100)}%`;

export function formatBytes(n: number | undefined): string {
  if (n === undefined) return "";
  const units = ["B", "KB", "MB", "GB"];
  let v = n;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

/** "code: message" of anything thrown (TcoderError carries the API's code). */
export function describeError(err: unknown): { code: string; message: string } {
  if (err && typeof err === "object" && "code" in err && "message" in err)
    return { code: String((err as { code: unknown }).code), message: String((err as { message: unknown }).message) };
  return { code: "error", message: err instanceof Error ? err.message : String(err) };
}

export const errorLine = (err: unknown) => {
  const { code, message } = describeError(err);
  return h("p", { class: "error", role: "alert" }, h("code", {}, code), " ", message);
};
