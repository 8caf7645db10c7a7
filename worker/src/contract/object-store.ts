/**
 * The object store's limits, which every upload is planned around: R2's, tighter than S3's in two
 * places (a single upload or part is 5 MiB short of 5 GiB; multipart parts are all one size but
 * the last). https://developers.cloudflare.com/r2/platform/limits/ · the local store enforces them.
 * No imports: the browser SDK takes these without pulling in zod.
 */

/** The largest single PUT, and the largest part of a multipart upload: 5 GiB less 5 MiB ("4.995 GiB"). */
export const MAX_SINGLE_UPLOAD_BYTES = 5 * 1024 ** 3 - 5 * 1024 ** 2;
/** Every multipart part but the last is at least this large. */
export const MIN_PART_BYTES = 5 * 1024 ** 2;
/** Parts in one multipart upload. */
export const MAX_PARTS = 10_000;
/** An object key, UTF-8 encoded. */
export const MAX_KEY_BYTES = 1024;
/** Custom (`x-amz-meta-*`) metadata of one object: names and values, UTF-8 encoded. */
export const MAX_METADATA_BYTES = 8192;
