/** The Lua scripts of the multipart upload endpoints (uploads.ts), with the conventions of script.ts. */
import { defineScript } from "../script.ts";

/** The job's upload fields, for the multipart endpoints (see uploads.ts). */
export const readUploadScript = defineScript({
  body: `
local fields = {'state', 'inputKey', 'inputSizeBytes', 'client', 'uploadExpiresAt', 'multipartUploadId',
  'multipartPartBytes'}
local values = redis.call('HMGET', cfg.jobKey, unpack(fields))
local named = {}
for i, field in ipairs(fields) do named[field] = values[i] or false end
return reply(named)
`,
});

/** Sets (`cfg.uploadId`) or clears (`cfg.expected`) the job's multipart upload, only while awaiting it. */
export const writeUploadScript = defineScript({
  body: `
local state = redis.call('HGET', cfg.jobKey, 'state')
if not state then return reply({result = 'not_found'}) end
if state ~= cfg.awaiting then return reply({result = 'invalid_state', state = state}) end
local current = redis.call('HGET', cfg.jobKey, 'multipartUploadId')
if cfg.uploadId then
  if current then return reply({result = 'exists', uploadId = current}) end
  redis.call('HSET', cfg.jobKey, 'multipartUploadId', cfg.uploadId, 'multipartPartBytes', cfg.partBytes,
    'updatedAt', cfg.now)
else
  if current ~= cfg.expected then return reply({result = 'exists', uploadId = current or false}) end
  redis.call('HDEL', cfg.jobKey, 'multipartUploadId', 'multipartPartBytes')
  redis.call('HSET', cfg.jobKey, 'updatedAt', cfg.now)
end
return reply({result = 'ok'})
`,
});
