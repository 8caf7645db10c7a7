/** Content types the API accepts (video/*, audio/*), by file extension. */
import { extname } from "node:path";

const byExtension: Record<string, string> = {
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
  ".m4a": "audio/mp4",
  ".mp3": "audio/mpeg",
  ".wav": "audio/wav",
  ".flac": "audio/flac",
  ".ogg": "audio/ogg",
  ".opus": "audio/ogg",
  ".aac": "audio/aac",
};

/** Unknown extensions are declared video/mp4: the API gates on the declared type, the machine's probe on the bytes. */
export const contentTypeForFile = (path: string) => byExtension[extname(path).toLowerCase()] ?? "video/mp4";
