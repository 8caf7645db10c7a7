/**
 * The Lua scripts of jobs (jobs.ts): create, upload, claim, machine events, cancel, retry, delete
 * and purge, lease recovery, upload expiry, listing, stats, the package lock; with the conventions
 * of script.ts. The claim and lease recovery handle tasks of chunked jobs too (scripts/tasks.ts),
 * with the task helpers of the prelude.
 */
import { JobState } from "../../contract/index.ts";
import { keys } from "../keys.ts";
import { defineScript } from "../script.ts";

export const createJobScript = defineScript({
  keys: { allJobs: keys.allJobs, queue: keys.queue, uploadDeadlines: keys.uploadDeadlines },
  body: `
if redis.call('EXISTS', cfg.jobKey) == 1 then return reply({created = false, job = job_flat(cfg.jobKey)}) end
redis.call('HSET', cfg.jobKey, unpack(cfg.fields))
redis.call('ZADD', K.allJobs, cfg.now, cfg.id)
redis.call('ZADD', cfg.statePrefix .. cfg.state, cfg.now, cfg.id)
if cfg.enqueue then redis.call('ZADD', K.queue, cfg.now, cfg.id) end
if cfg.uploadExpiresAt then redis.call('ZADD', K.uploadDeadlines, cfg.uploadExpiresAt, cfg.id) end
return reply({created = true, job = job_flat(cfg.jobKey)})
`,
});

export const readJobScript = defineScript({
  body: `
return reply({job = job_flat(cfg.jobKey)})
`,
});

/**
 * Only `cfg.from` (awaiting_upload) moves; anything else is
 * a replay, except that an object arriving for a deleted job (a presigned PUT used after the
 * delete) sends the job back to the purge queue so that object goes too.
 */
export const markUploadedScript = defineScript({
  keys: { queue: keys.queue, uploadDeadlines: keys.uploadDeadlines, purges: keys.purges },
  body: `
local state = redis.call('HGET', cfg.jobKey, 'state')
if not state then return reply({result = 'unknown'}) end
if state == cfg.deleted then
  redis.call('HSET', cfg.jobKey, 'purgeNotBefore', cfg.now)
  redis.call('HDEL', cfg.jobKey, 'purgedAt')
  redis.call('ZADD', K.purges, cfg.now, cfg.id)
  return reply({result = 'duplicate', job = job_flat(cfg.jobKey)})
end
if not includes(cfg.from, state) then return reply({result = 'duplicate', job = job_flat(cfg.jobKey)}) end
set_state(cfg.jobKey, cfg.id, state, cfg.to)
redis.call('HSET', cfg.jobKey, 'queuedAt', cfg.now, 'uploadedAt', cfg.now)
if cfg.sizeBytes then redis.call('HSET', cfg.jobKey, 'inputSizeBytes', cfg.sizeBytes) end
if cfg.eTag then redis.call('HSET', cfg.jobKey, 'inputETag', cfg.eTag) end
redis.call('ZADD', K.queue, cfg.now, cfg.id)
redis.call('ZREM', K.uploadDeadlines, cfg.id)
return reply({result = 'queued', job = job_flat(cfg.jobKey)})
`,
});

/**
 * Pop + running + attempts+1 + lease + machine busy, all in one script:
 * there is no moment in which a popped job is neither queued nor leased. The claimer's machine
 * hash records it as busy, but only admission (registration) and reconciliation with Fly's list
 * put a machine in the pool, so a claimer Fly does not know never counts against the cap.
 */
export const claimScript = defineScript({
  keys: { queue: keys.queue, leases: keys.leases },
  body: `
local mstate = redis.call('HGET', cfg.machineKey, 'state')
if mstate == cfg.m.stopping or mstate == cfg.m.stopped then return reply({claimed = false}) end
local function lease_to_machine(id)
  redis.call('ZADD', K.leases, cfg.leaseExpiresAt, id)
  redis.call('HSET', cfg.machineKey, 'state', cfg.m.busy, 'jobId', id, 'updatedAt', cfg.now)
  redis.call('HSETNX', cfg.machineKey, 'createdAt', cfg.now)
  redis.call('HSETNX', cfg.machineKey, 'startedAt', cfg.now)
end
-- What a machine needs of the job to work on it, or on one of its tasks (\`extra\`).
local function claimed(job_id, key, attempt, extra)
  local answer = {claimed = true, jobId = job_id, attempt = attempt, preset = redis.call('HGET', key, 'preset'),
    inputKey = redis.call('HGET', key, 'inputKey'), playback = redis.call('HGET', key, 'playback'),
    loudness = redis.call('HGET', key, 'loudness'),
    source = {url = redis.call('HGET', key, 'sourceUrl') or false,
      maxBytes = redis.call('HGET', key, 'sourceMaxBytes') or false,
      allowLoopback = redis.call('HGET', key, 'sourceAllowLoopback') or false},
    leaseExpiresAt = cfg.leaseExpiresAt}
  for k, v in pairs(extra) do answer[k] = v end
  return reply(answer)
end
for _ = 1, 100 do
  local popped = redis.call('ZPOPMIN', K.queue)
  if #popped == 0 then return reply({claimed = false}) end
  local id = popped[1]
  local job_id = job_of_task(id)
  if job_id then
    local tkey = cfg.taskPrefix .. id
    local jkey = cfg.jobPrefix .. job_id
    -- a task of a job that ended (canceled, failed, deleted) is dropped, never run
    if redis.call('HGET', jkey, 'state') == cfg.to and redis.call('HGET', tkey, 'state') == cfg.t.pending then
      move_task(tkey, jkey, cfg.t.pending, cfg.t.running)
      local attempt = redis.call('HINCRBY', tkey, 'attempts', 1)
      redis.call('HSET', tkey, 'machineId', cfg.machineId, 'startedAt', cfg.now, 'leaseExpiresAt', cfg.leaseExpiresAt,
        'leaseMs', cfg.leaseMs, 'progress', '0')
      lease_to_machine(id)
      local name = redis.call('HGET', tkey, 'name')
      -- the finalize task stitches what every other task made
      local results = {}
      if name == cfg.finalizeTask then
        for _, other in ipairs(cjson.decode(redis.call('HGET', jkey, 'tasks') or '[]')) do
          if other ~= name then table.insert(results, {other, redis.call('HGET', cfg.taskPrefix .. job_id .. '/' .. other, 'result') or false}) end
        end
      end
      return claimed(job_id, jkey, tonumber(redis.call('HGET', jkey, 'attempts') or '1'),
        {task = {name = name, attempt = attempt, spec = redis.call('HGET', tkey, 'spec'), results = results},
         probe = redis.call('HGET', jkey, 'probe')})
    end
  end
  local key = cfg.jobPrefix .. id
  local state = not job_id and redis.call('HGET', key, 'state')
  -- an entry whose job is no longer claimable is dropped from the queue, never run
  if state and includes(cfg.from, state) then
    set_state(key, id, state, cfg.to)
    local attempt = redis.call('HINCRBY', key, 'attempts', 1)
    redis.call('HSET', key, 'machineId', cfg.machineId, 'startedAt', cfg.now, 'leaseExpiresAt', cfg.leaseExpiresAt,
      'leaseMs', cfg.leaseMs, 'progress', '0')
    redis.call('HDEL', key, 'stage', 'finishedAt')
    lease_to_machine(id)
    return claimed(id, key, attempt, {})
  end
end
return reply({claimed = false})
`,
});

/**
 * A machine event applies only while the job is `cfg.from` (running) and held
 * by this (machineId, attempt); otherwise the machine is told to abort, except for an exact replay
 * of the event that made the job terminal (`cfg.replayState`), which changes nothing.
 */
export const machineEventScript = defineScript({
  keys: { queue: keys.queue, leases: keys.leases },
  body: `
local state = redis.call('HGET', cfg.jobKey, 'state')
if not state then return reply({action = 'abort', changed = false, job = {}}) end
local owner = redis.call('HGET', cfg.jobKey, 'machineId')
local attempts = tonumber(redis.call('HGET', cfg.jobKey, 'attempts') or '0')
local ours = owner == cfg.machineId and attempts == tonumber(cfg.attempt)
if not includes(cfg.from, state) or not ours then
  if ours and cfg.replayState and state == cfg.replayState then
    return reply({action = 'continue', changed = false, job = job_flat(cfg.jobKey)})
  end
  machine_finished(cfg.machineId, cfg.id)
  return reply({action = 'abort', changed = false, job = job_flat(cfg.jobKey)})
end
if cfg.extendLease then
  local lease_ms = tonumber(redis.call('HGET', cfg.jobKey, 'leaseMs') or cfg.defaultLeaseMs)
  local expires = string.format('%d', tonumber(cfg.now) + lease_ms)
  redis.call('HSET', cfg.jobKey, 'leaseExpiresAt', expires)
  redis.call('ZADD', K.leases, expires, cfg.id)
end
redis.call('HSET', cfg.jobKey, 'updatedAt', cfg.now)
if #cfg.set > 0 then redis.call('HSET', cfg.jobKey, unpack(cfg.set)) end
local terminal = false
if cfg.to then
  local to = cfg.to
  local max = tonumber(redis.call('HGET', cfg.jobKey, 'maxAttempts') or '1')
  if cfg.retryTo and attempts < max then to = cfg.retryTo end
  end_attempt(cfg.jobKey, cfg.now, cfg.outcome or to)
  set_state(cfg.jobKey, cfg.id, state, to)
  if cfg.usage and to == cfg.to then count_completion(cfg.jobKey, cfg.usage) end
  redis.call('ZREM', K.leases, cfg.id)
  redis.call('HDEL', cfg.jobKey, 'leaseExpiresAt', 'leaseMs')
  if to == cfg.queuedState then
    if cfg.uncountAttempt then redis.call('HINCRBY', cfg.jobKey, 'attempts', -1) end
    redis.call('ZADD', K.queue, redis.call('HGET', cfg.jobKey, 'queuedAt') or cfg.now, cfg.id)
  else
    redis.call('HSET', cfg.jobKey, 'finishedAt', cfg.now)
    terminal = includes(cfg.terminalStates, to)
  end
  machine_finished(cfg.machineId, cfg.id)
end
return reply({action = 'continue', changed = true, terminal = terminal, job = job_flat(cfg.jobKey)})
`,
});

export const cancelScript = defineScript({
  keys: { queue: keys.queue, leases: keys.leases, uploadDeadlines: keys.uploadDeadlines },
  body: `
local state = redis.call('HGET', cfg.jobKey, 'state')
if not state then return reply({result = 'not_found'}) end
if not includes(cfg.from, state) then return reply({result = 'invalid_state', job = job_flat(cfg.jobKey)}) end
if state == cfg.running then end_attempt(cfg.jobKey, cfg.now, cfg.to) end
set_state(cfg.jobKey, cfg.id, state, cfg.to)
redis.call('ZREM', K.queue, cfg.id)
redis.call('ZREM', K.leases, cfg.id)
redis.call('ZREM', K.uploadDeadlines, cfg.id)
redis.call('HDEL', cfg.jobKey, 'leaseExpiresAt', 'leaseMs')
redis.call('HSET', cfg.jobKey, 'finishedAt', cfg.now)
expire_tasks(cfg.jobKey, cfg.id)
return reply({result = 'ok', job = job_flat(cfg.jobKey)})
`,
});

/**
 * Delete: the tombstone is written first
 * (state `deleted`, `deletedAt`, outputs gone from the record, out of every index but its state's)
 * and the job joins the purge queue; its objects are removed afterwards (deletion/purge.ts), so a
 * store failure halfway leaves a tombstone the cron finishes. A running job's machine gets `abort`
 * on its next event; its objects are purged again once its lease has run out (`purgeNotBefore`),
 * after which it cannot have written anything more. Deleting a deleted job is `already`.
 */
export const deleteJobScript = defineScript({
  keys: {
    queue: keys.queue,
    leases: keys.leases,
    uploadDeadlines: keys.uploadDeadlines,
    allJobs: keys.allJobs,
    purges: keys.purges,
  },
  body: `
local state = redis.call('HGET', cfg.jobKey, 'state')
if not state then return reply({result = 'not_found'}) end
if state == cfg.to then return reply({result = 'already', job = job_flat(cfg.jobKey)}) end
if not includes(cfg.from, state) then return reply({result = 'invalid_state', job = job_flat(cfg.jobKey)}) end
local not_before = cfg.now
if state == cfg.running then
  local lease = tonumber(redis.call('HGET', cfg.jobKey, 'leaseExpiresAt') or cfg.now)
  -- a chunked job's machines hold its tasks' leases: the purge waits for the last of them too
  for _, name in ipairs(cjson.decode(redis.call('HGET', cfg.jobKey, 'tasks') or '[]')) do
    local task_lease = tonumber(redis.call('HGET', cfg.taskPrefix .. cfg.id .. '/' .. name, 'leaseExpiresAt') or '0')
    if task_lease > lease then lease = task_lease end
  end
  if lease > tonumber(cfg.now) then not_before = string.format('%d', lease) end
  end_attempt(cfg.jobKey, cfg.now, cfg.to)
end
-- What the job kept stored goes with it.
local stored = tonumber(redis.call('HGET', cfg.jobKey, 'storedBytes') or '0')
if stored > 0 then
  redis.call('INCRBY', cfg.storedBytesKey, string.format('%d', -stored))
  redis.call('HSET', cfg.jobKey, 'storedBytes', '0')
end
set_state(cfg.jobKey, cfg.id, state, cfg.to)
redis.call('ZREM', K.queue, cfg.id)
redis.call('ZREM', K.leases, cfg.id)
redis.call('ZREM', K.uploadDeadlines, cfg.id)
redis.call('ZREM', K.allJobs, cfg.id)
redis.call('HDEL', cfg.jobKey, 'outputs', 'stage', 'leaseExpiresAt', 'leaseMs')
forget_tasks(cfg.jobKey, cfg.id)
redis.call('HSET', cfg.jobKey, 'deletedAt', cfg.now, 'purgeNotBefore', not_before)
redis.call('ZADD', K.purges, cfg.now, cfg.id)
return reply({result = 'ok', job = job_flat(cfg.jobKey)})
`,
});

/** Deleted jobs whose objects are due to be removed, oldest first. */
export const duePurgesScript = defineScript({
  keys: { purges: keys.purges },
  body: `
return reply({ids = redis.call('ZRANGEBYSCORE', K.purges, '-inf', cfg.now, 'LIMIT', 0, cfg.limit)})
`,
});

/**
 * A purge pass that began at `cfg.startedAt` removed every object it found. It
 * settles the job only if nothing could have written after it began (`purgeNotBefore`), else the
 * job stays queued for a pass at that time.
 */
export const finishPurgeScript = defineScript({
  keys: { purges: keys.purges },
  body: `
local state = redis.call('HGET', cfg.jobKey, 'state')
if state ~= cfg.deleted then
  redis.call('ZREM', K.purges, cfg.id)
  return reply({purged = false})
end
local not_before = tonumber(redis.call('HGET', cfg.jobKey, 'purgeNotBefore') or '0')
if not_before > tonumber(cfg.startedAt) then
  redis.call('ZADD', K.purges, string.format('%d', not_before), cfg.id)
  return reply({purged = false})
end
redis.call('ZREM', K.purges, cfg.id)
redis.call('HDEL', cfg.jobKey, 'multipartUploadId', 'multipartPartBytes')
redis.call('HSET', cfg.jobKey, 'purgedAt', cfg.now)
return reply({purged = true})
`,
});

/**
 * A job canceled before its upload event arrived is retried too: the object may
 * have landed since, and a machine that cannot find it fails the job with `input_missing`.
 */
export const retryScript = defineScript({
  keys: { queue: keys.queue },
  body: `
local state = redis.call('HGET', cfg.jobKey, 'state')
if not state then return reply({result = 'not_found'}) end
if not includes(cfg.from, state) then
  return reply({result = 'invalid_state', job = job_flat(cfg.jobKey)})
end
set_state(cfg.jobKey, cfg.id, state, cfg.to)
redis.call('HSET', cfg.jobKey, 'attempts', '0', 'progress', '0', 'queuedAt', cfg.now)
redis.call('HDEL', cfg.jobKey, 'error', 'stage', 'machineId', 'startedAt', 'finishedAt', 'leaseExpiresAt', 'leaseMs',
  'outputs', 'probe', 'callback')
-- a chunked job is split anew: its tasks start over with the job
forget_tasks(cfg.jobKey, cfg.id)
redis.call('ZADD', K.queue, cfg.now, cfg.id)
return reply({result = 'ok', job = job_flat(cfg.jobKey)})
`,
});

/**
 * Running jobs whose lease passed go back to the queue (attempts already
 * counted their claim) or, once `attempts >= maxAttempts`, fail with `cfg.errorJson`.
 */
export const recoverLeasesScript = defineScript({
  keys: { leases: keys.leases, queue: keys.queue },
  body: `
local now = tonumber(cfg.now)
local ids = redis.call('ZRANGEBYSCORE', K.leases, '-inf', cfg.now, 'LIMIT', 0, cfg.limit)
local requeued, failed = {}, {}
for _, id in ipairs(ids) do
  local job_id = job_of_task(id)
  local key = job_id and cfg.taskPrefix .. id or cfg.jobPrefix .. id
  redis.call('ZREM', K.leases, id)
  local state = redis.call('HGET', key, 'state')
  local expires = tonumber(redis.call('HGET', key, 'leaseExpiresAt') or '0')
  local running = job_id and cfg.t.running or cfg.running
  if state == running and expires > now then
    redis.call('ZADD', K.leases, expires, id)
  elseif job_id and state == running then
    local jkey = cfg.jobPrefix .. job_id
    local heard = expires - tonumber(redis.call('HGET', key, 'leaseMs') or '0')
    end_attempt_of(key, jkey, string.format('%d', math.max(heard, tonumber(redis.call('HGET', key, 'startedAt') or heard))),
      'lease_expired', redis.call('HGET', key, 'name'))
    local outcome = stop_task(key, jkey, job_id, true, false, cfg.errorJson, K.queue, K.leases)
    if outcome == 'requeued' then table.insert(requeued, id) elseif outcome == 'failed' then table.insert(failed, job_id) end
  elseif job_id then
    -- a task no longer running: nothing to recover
  elseif state == cfg.running then
    local attempts = tonumber(redis.call('HGET', key, 'attempts') or '0')
    local max = tonumber(redis.call('HGET', key, 'maxAttempts') or '1')
    local machine_id = redis.call('HGET', key, 'machineId')
    -- The machine was last heard of when it last extended its lease.
    local heard = expires - tonumber(redis.call('HGET', key, 'leaseMs') or '0')
    end_attempt(key, string.format('%d', math.max(heard, tonumber(redis.call('HGET', key, 'startedAt') or heard))),
      'lease_expired')
    redis.call('HDEL', key, 'leaseExpiresAt', 'leaseMs')
    if attempts >= max then
      set_state(key, id, state, cfg.failed)
      redis.call('HSET', key, 'error', cfg.errorJson, 'finishedAt', cfg.now)
      table.insert(failed, id)
    else
      set_state(key, id, state, cfg.queued)
      redis.call('ZADD', K.queue, redis.call('HGET', key, 'queuedAt') or cfg.now, id)
      table.insert(requeued, id)
    end
    machine_finished(machine_id, id)
  end
end
return reply({requeued = requeued, failed = failed})
`,
});

export const expireUploadsScript = defineScript({
  keys: { uploadDeadlines: keys.uploadDeadlines },
  body: `
local ids = redis.call('ZRANGEBYSCORE', K.uploadDeadlines, '-inf', cfg.now, 'LIMIT', 0, cfg.limit)
local expired = {}
for _, id in ipairs(ids) do
  local key = cfg.jobPrefix .. id
  redis.call('ZREM', K.uploadDeadlines, id)
  local state = redis.call('HGET', key, 'state')
  if state and includes(cfg.from, state) then
    set_state(key, id, state, cfg.to)
    redis.call('HSET', key, 'finishedAt', cfg.now)
    table.insert(expired, id)
  end
end
return reply({expired = expired})
`,
});

/**
 * `cfg.index`: the index to list. Keyset pagination, newest first: the cursor is the last returned
 * `(score, id)`; equal scores come in reverse id order, as ZREVRANGEBYSCORE returns them.
 */
export const listJobsScript = defineScript({
  body: `
local limit = tonumber(cfg.limit)
local collected = {}
local offset = 0
local max_score = cfg.cursorScore or '+inf'
while #collected <= limit do
  local batch = redis.call('ZREVRANGEBYSCORE', cfg.index, max_score, '-inf', 'WITHSCORES', 'LIMIT', offset, limit + 1)
  if #batch == 0 then break end
  for i = 1, #batch, 2 do
    local id, score = batch[i], batch[i + 1]
    local after = not (cfg.cursorScore and tonumber(score) == tonumber(cfg.cursorScore) and id >= cfg.cursorId)
    if after and #collected <= limit then table.insert(collected, {id, score}) end
  end
  offset = offset + #batch / 2
end
local jobs = {}
for i = 1, math.min(limit, #collected) do table.insert(jobs, job_flat(cfg.jobPrefix .. collected[i][1])) end
local next_cursor = false
if #collected > limit then next_cursor = collected[limit][2] .. ':' .. collected[limit][1] end
return reply({jobs = jobs, nextCursor = next_cursor})
`,
});

/**
 * `cfg.hours` are the hour starts of the last 30
 * days, newest first; the first `cfg.dayHours` of them make the last 24 hours.
 */
export const statsScript = defineScript({
  keys: {
    queue: keys.queue,
    running: keys.jobsInState(JobState.enum.running),
    machines: keys.machines,
    admission: keys.admission,
  },
  body: `
local fields = {'machineSeconds', 'attempts', 'jobsCompleted', 'outputSeconds', 'objectsWritten', 'bytesWritten'}
local day, month = {}, {}
for _, f in ipairs(fields) do day[f] = 0; month[f] = 0 end
for i, hour in ipairs(cfg.hours) do
  local values = redis.call('HMGET', cfg.usageHourPrefix .. hour, unpack(fields))
  for j, f in ipairs(fields) do
    local v = tonumber(values[j] or '0') or 0
    month[f] = month[f] + v
    if i <= cfg.dayHours then day[f] = day[f] + v end
  end
end
local oldest = redis.call('ZRANGE', K.queue, 0, 0, 'WITHSCORES')
local machines = {}
for _, id in ipairs(redis.call('SMEMBERS', K.machines)) do
  local state = redis.call('HGET', cfg.machinePrefix .. id, 'state') or 'unknown'
  machines[state] = (machines[state] or 0) + 1
end
return reply({queued = redis.call('ZCARD', K.queue), running = redis.call('ZCARD', K.running),
  oldestQueuedAt = oldest[2] or false, machines = machines, admission = redis.call('HGETALL', K.admission),
  usage = {day = day, month = month, storedBytes = tonumber(redis.call('GET', cfg.storedBytesKey) or '0')}})
`,
});

/** Takes a job's package lock (`cfg.lockKey`) for `cfg.token` unless another holds it. */
export const lockPackageScript = defineScript({
  body: `
local taken = redis.call('SET', cfg.lockKey, cfg.token, 'NX', 'PX', cfg.ttlMs)
return reply({locked = taken ~= false})
`,
});

/** Releases the package lock only if `cfg.token` still holds it (an expired one may be another's). */
export const unlockPackageScript = defineScript({
  body: `
if redis.call('GET', cfg.lockKey) == cfg.token then redis.call('DEL', cfg.lockKey) end
return reply({})
`,
});

/**
 * A completed job's outputs, replaced after its package was republished; refused when the
 * job is no longer in `cfg.state` (deleted meanwhile).
 */
export const replaceOutputsScript = defineScript({
  body: `
local state = redis.call('HGET', cfg.jobKey, 'state')
if not state then return reply({result = 'not_found'}) end
if state ~= cfg.state then return reply({result = 'invalid_state', job = job_flat(cfg.jobKey)}) end
redis.call('HSET', cfg.jobKey, 'outputs', cfg.outputs, 'updatedAt', cfg.now)
return reply({result = 'ok', job = job_flat(cfg.jobKey)})
`,
});

/** Records client-callback delivery state without resurrecting a deleted job. */
export const recordCallbackScript = defineScript({
  body: `
if redis.call('EXISTS', cfg.jobKey) == 0 then return reply({found = false}) end
redis.call('HSET', cfg.jobKey, 'callback', cfg.callback)
return reply({found = true})
`,
});
