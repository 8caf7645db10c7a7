/**
 * Content types by file extension, for every name tcoder maps to a type: a source a client uploads
 * (the SDK and the CLI declare it to `POST /v1/uploads`), each file of a package the machine and the
 * API publish, and the captions the API takes. No zod, so the SDK's browser bundle can take it as
 * it is.
 */
import { captionsFormat } from "./webvtt.ts";

/** Sources: the API accepts any video/* or audio/* type; these are the ones named by extension. */
const sourceTypes = {
  ".mp4": "video/mp4",
  ".m4v": "video/mp4",
  ".mov": "video/quicktime",
  ".mkv": "video/x-matroska",
  ".webm": "video/webm",
  ".avi": "video/x-msvideo",
  ".ts": "video/mp2t",
  ".mpg": "video/mpeg",
  ".mpeg": "video/mpeg",
  ".flv": "video/x-flv",
  ".3gp": "video/3gpp",
  ".ogv": "video/ogg",
  ".m4a": "audio/mp4",
  ".mp3": "audio/mpeg",
  ".wav": "audio/wav",
  ".flac": "audio/flac",
  ".ogg": "audio/ogg",
  ".opus": "audio/ogg",
  ".aac": "audio/aac",
} as const;

/** Captions a client adds to a finished job (`POST /v1/jobs/{id}/captions`); the content decides which. */
export const captionTypes = { webvtt: "text/vtt", subrip: "application/x-subrip" } as const;

/** The files of a package (`packagePaths`), as the store serves them. */
const packageTypes = {
  ".m3u8": "application/vnd.apple.mpegurl",
  ".mpd": "application/dash+xml",
  ".m4s": "video/iso.segment",
  ".mp4": sourceTypes[".mp4"],
  ".m4a": sourceTypes[".m4a"],
  ".ts": sourceTypes[".ts"],
  ".jpg": "image/jpeg",
  ".vtt": `${captionTypes.webvtt}; charset=utf-8`,
  ".json": "application/json",
} as const;

/** The extension of a file name or key, lower-cased, with its dot (`""` for none). */
export const extensionOf = (name: string) => /\.[^./]*$/.exec(name)?.[0].toLowerCase() ?? "";

const lookup = (table: Record<string, string>, name: string): string | undefined => table[extensionOf(name)];

/** The media type of a source file by its name; `undefined` for an extension that names none. */
export const sourceContentType = (filename: string): string | undefined => lookup(sourceTypes, filename);

/** The Content-Type a package file is published with. */
export const contentTypeFor = (key: string): string => lookup(packageTypes, key) ?? "application/octet-stream";

/** The Content-Type a captions file's text is sent with (text that is neither is the API's to refuse). */
export const captionsContentType = (text: string): string => captionTypes[captionsFormat(text) ?? "subrip"];
