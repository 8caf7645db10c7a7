/** An S3 error response: the HTTP status and the `<Error><Code>` a client branches on. */
export class S3Error extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly extra: Record<string, string> = {},
  ) {
    super(message);
  }
}

export const accessDenied = (message = "Access Denied") => new S3Error(403, "AccessDenied", message);
export const noSuchBucket = (bucket: string) =>
  new S3Error(404, "NoSuchBucket", "The specified bucket does not exist", { BucketName: bucket });
export const noSuchKey = (key: string) =>
  new S3Error(404, "NoSuchKey", "The specified key does not exist.", { Key: key });
export const noSuchUpload = (uploadId: string) =>
  new S3Error(404, "NoSuchUpload", "The specified upload does not exist.", { UploadId: uploadId });
export const invalidRequest = (message: string) => new S3Error(400, "InvalidRequest", message);
