/** The few XML documents S3 speaks: rendering responses and reading the two request bodies it takes. */
import type { ServerResponse } from "node:http";
import { sendBody } from "../http-service.ts";

export type XmlNode = string | number | boolean | null | undefined | XmlElement | XmlNode[];
export interface XmlElement {
  [tag: string]: XmlNode;
}

const s3Namespace = "http://s3.amazonaws.com/doc/2006-03-01/";

export function escapeXml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** `renderXml("ListBucketResult", {Name: "b", Contents: [{Key: "k"}, …]})`: arrays repeat their tag. */
export function renderXml(root: string, body: XmlElement, namespace = true): string {
  const attrs = namespace ? ` xmlns="${s3Namespace}"` : "";
  return `<?xml version="1.0" encoding="UTF-8"?>\n<${root}${attrs}>${renderChildren(body)}</${root}>`;
}

function renderChildren(element: XmlElement): string {
  return Object.entries(element)
    .map(([tag, value]) => renderNode(tag, value))
    .join("");
}

function renderNode(tag: string, value: XmlNode): string {
  if (value === undefined || value === null) return "";
  if (Array.isArray(value)) return value.map((item) => renderNode(tag, item)).join("");
  if (typeof value === "object") return `<${tag}>${renderChildren(value)}</${tag}>`;
  return `<${tag}>${escapeXml(String(value))}</${tag}>`;
}

export function unescapeXml(value: string): string {
  return value
    .replace(/&#x([0-9a-f]+);/gi, (_, hex: string) => String.fromCodePoint(Number.parseInt(hex, 16)))
    .replace(/&#(\d+);/g, (_, dec: string) => String.fromCodePoint(Number(dec)))
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&amp;/g, "&");
}

/** The text of every `<tag>…</tag>` block (namespace-free tags, no nesting of the same tag). */
export function xmlBlocks(xml: string, tag: string): string[] {
  const pattern = new RegExp(`<${tag}(?:\\s[^>]*)?>([\\s\\S]*?)</${tag}>`, "g");
  return [...xml.matchAll(pattern)].map((m) => m[1] ?? "");
}

export function xmlText(xml: string, tag: string): string | undefined {
  const block = xmlBlocks(xml, tag)[0];
  return block === undefined ? undefined : unescapeXml(block.trim());
}

export function sendXml(res: ServerResponse, status: number, xml: string) {
  sendBody(res, status, "application/xml", xml);
}
