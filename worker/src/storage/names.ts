/**
 * Object names for uploads. The client's file name is kept verbatim on the job (`input.filename`)
 * but never reaches an object key as-is: the key uses a derived safe name.
 */
import { MAX_KEY_BYTES } from "../contract/object-store.ts";
import { INPUT_KEY_PREFIX } from "../state/keys.ts";

const MAX_FILENAME_BYTES = 255;
// C0/C1 controls, DEL, and the separators that would make a name into a path.
const FORBIDDEN = /[\p{Cc}/\\]/u;

/** Why a client-supplied file name is refused outright (null when it is acceptable). */
export function filenameProblem(name: string): string | null {
  if (name.length === 0) return "filename is empty";
  if (new TextEncoder().encode(name).byteLength > MAX_FILENAME_BYTES) return "filename is longer than 255 bytes";
  if (FORBIDDEN.test(name)) return "filename must not contain path separators or control characters";
  if (name === "." || name === "..") return "filename must name a file";
  return null;
}

const UNSAFE_RUN = /[^\p{L}\p{N}_-]+/gu;
const MAX_STEM_CHARS = 100;

/**
 * Derives the name used in the object key: unicode letters and digits, `_` and `-` survive,
 * every other run of characters becomes one `_`; a short alphanumeric extension is kept.
 * The result never starts with a dot, never contains `/`, `\`, `..`, `%`, `?` or `#`.
 */
export function safeFileName(name: string): string {
  const normalized = name.normalize("NFC");
  const dot = normalized.lastIndexOf(".");
  const rawExt = dot > 0 ? normalized.slice(dot + 1) : "";
  const ext = /^[\p{L}\p{N}]{1,10}$/u.test(rawExt) ? rawExt.toLowerCase() : "";
  const rawStem = ext ? normalized.slice(0, dot) : normalized;
  const stem = [...rawStem.replace(UNSAFE_RUN, "_").replace(/^_+|_+$/g, "")].slice(0, MAX_STEM_CHARS).join("");
  return `${stem || "upload"}${ext ? `.${ext}` : ""}`;
}

/** Keys a client may name in `POST /v1/jobs`: inside the inputs prefix, no dot segments. */
export function inputKeyProblem(key: string): string | null {
  if (!key.startsWith(INPUT_KEY_PREFIX)) return `inputKey must start with ${INPUT_KEY_PREFIX}`;
  // The store counts UTF-8 bytes, not characters.
  if (new TextEncoder().encode(key).byteLength > MAX_KEY_BYTES)
    return `inputKey is longer than ${MAX_KEY_BYTES} bytes (UTF-8)`;
  if (FORBIDDEN.test(key.replaceAll("/", ""))) return "inputKey must not contain control characters or backslashes";
  if (key.split("/").some((segment) => segment === "." || segment === ".." || segment === ""))
    return "inputKey must not contain empty or dot segments";
  return null;
}
