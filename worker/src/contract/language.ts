/**
 * Language tags of audio and subtitle renditions. Sources tag streams with ISO 639-2 codes
 * (`eng`, `fre`, `ger`); HLS and DASH want BCP 47 (`en`, `fr`, `de`). ICU's alias data (through
 * `Intl`) does the mapping and supplies a display name, so no table is kept here.
 */

/**
 * What a client may name a language with (captions, the CLI's --captions-language): a BCP 47 tag
 * such as `en`, `pt-BR` or `yue-Hant`, at most 35 characters.
 */
export const LANGUAGE_TAG = /^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$/;
export const MAX_LANGUAGE_TAG_LENGTH = 35;

/** BCP 47 form of a language tag, or undefined for none, `und` (undetermined) or an unusable tag. */
export function languageTag(raw: string | undefined): string | undefined {
  const trimmed = raw?.trim();
  if (!trimmed) return undefined;
  try {
    const [canonical] = Intl.getCanonicalLocales(trimmed);
    return canonical && canonical !== "und" ? canonical : undefined;
  } catch {
    return undefined;
  }
}

const names = new Intl.DisplayNames(["en"], { type: "language", fallback: "none" });

/** English name of a BCP 47 tag (`en` → English), or undefined when ICU has none. */
export function languageName(tag: string | undefined): string | undefined {
  if (!tag) return undefined;
  try {
    return names.of(tag);
  } catch {
    return undefined;
  }
}
