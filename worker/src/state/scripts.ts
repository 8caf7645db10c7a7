/**
 * Every Lua script tcoder runs in Redis. Each state change is one script, so it is atomic and
 * checks the current state before writing (compare-and-set).
 *
 * Conventions: fixed keys come in KEYS; everything else comes in ONE JSON config (`ARGV[1]`,
 * decoded into `cfg`) built in TypeScript: ids, per-id key prefixes from keys.ts, the state names
 * and allowed `from` states taken from the contract's `transitions`, and times as ms strings (so
 * Lua never formats a float into a key or field). Every script answers with one JSON document;
 * job records travel as raw HGETALL arrays inside it, so @upstash/redis' automatic
 * deserialization can never reinterpret a field value.
 */
import type { Redis } from "@upstash/redis";

/** The only part of the Upstash client the state layer needs; any `Redis` flavour fits. */
export type StateRedis = Pick<Redis, "createScript">;

type LoadedScript = ReturnType<Redis["createScript"]>;

const prelude = `
local cfg = cjson.decode(ARGV[1])
local function reply(t) return cjson.encode(t) end
local function includes(list, v)
  if not list then return false end
  for _, x in ipairs(list) do if x == v then return true end end
  return false
end
local function job_flat(key) return redis.call('HGETALL', key) end
local function set_state(key, id, from, to)
  local created = redis.call('HGET', key, 'createdAt') or cfg.now
  redis.call('HSET', key, 'state', to, 'updatedAt', cfg.now)
  redis.call('ZREM', cfg.statePrefix .. from, id)
  redis.call('ZADD', cfg.statePrefix .. to, created, id)
end
-- The attempt a job (hkey = jkey) or one of its tasks (hkey = the task's hash) is running ends at
-- ended_ms (a string): its machine time is added to the job's \`machineTime\` list and to this hour's
-- usage, once per attempt (\`endedStartedAt\` remembers it).
local function end_attempt_of(hkey, jkey, ended_ms, outcome, task)
  local started = redis.call('HGET', hkey, 'startedAt')
  if not started or redis.call('HGET', hkey, 'endedStartedAt') == started then return end
  local seconds = math.max(0, (tonumber(ended_ms) - tonumber(started)) / 1000)
  local list = cjson.decode(redis.call('HGET', jkey, 'machineTime') or '[]')
  local entry = {attempt = tonumber(redis.call('HGET', hkey, 'attempts') or '0'),
    machineId = redis.call('HGET', hkey, 'machineId') or '', startedAt = started,
    seconds = tonumber(string.format('%.3f', seconds)), outcome = outcome}
  if task then entry.task = task end
  table.insert(list, entry)
  redis.call('HSET', jkey, 'machineTime', cjson.encode(list))
  redis.call('HSET', hkey, 'endedStartedAt', started)
  redis.call('HINCRBYFLOAT', cfg.usageKey, 'machineSeconds', string.format('%.3f', seconds))
  redis.call('HINCRBY', cfg.usageKey, 'attempts', 1)
  redis.call('EXPIRE', cfg.usageKey, cfg.usageTtl)
end
local function end_attempt(key, ended_ms, outcome) end_attempt_of(key, key, ended_ms, outcome, nil) end
-- A completed package: the job records what it keeps stored, and this hour's usage counts it.
local function count_completion(key, usage)
  local source = tonumber(cjson.decode(redis.call('HGET', key, 'probe') or '{}').sizeBytes or 0)
  local stored = source + usage.packageBytes
  redis.call('HSET', key, 'outputSeconds', string.format('%.3f', usage.outputSeconds), 'storedBytes', string.format('%d', stored))
  redis.call('INCRBY', cfg.storedBytesKey, string.format('%d', stored))
  redis.call('HINCRBY', cfg.usageKey, 'jobsCompleted', 1)
  redis.call('HINCRBYFLOAT', cfg.usageKey, 'outputSeconds', string.format('%.3f', usage.outputSeconds))
  redis.call('HINCRBY', cfg.usageKey, 'objectsWritten', string.format('%d', usage.objects))
  redis.call('HINCRBY', cfg.usageKey, 'bytesWritten', string.format('%d', usage.packageBytes))
  redis.call('EXPIRE', cfg.usageKey, cfg.usageTtl)
end
-- The machine no longer works on job_id: it becomes idle and its idle clock starts now.
local function machine_finished(machine_id, job_id)
  if not machine_id or machine_id == '' then return end
  local mkey = cfg.machinePrefix .. machine_id
  if redis.call('HGET', mkey, 'jobId') ~= job_id then return end
  redis.call('HDEL', mkey, 'jobId')
  if redis.call('HGET', mkey, 'state') == cfg.m.busy then redis.call('HSET', mkey, 'state', cfg.m.idle) end
  redis.call('HSET', mkey, 'lastJobFinishedAt', cfg.now, 'updatedAt', cfg.now)
end
-- Tasks of chunked jobs (contract/tasks.ts): \`<jobId>/<task>\` in the queue and the leases, a hash
-- each; the job counts its tasks by state in \`tasks:<state>\`.
local function job_of_task(id)
  local slash = string.find(id, '/', 1, true)
  if not slash then return nil end
  return string.sub(id, 1, slash - 1)
end
local function move_task(tkey, jkey, from, to)
  redis.call('HSET', tkey, 'state', to, 'updatedAt', cfg.now)
  redis.call('HINCRBY', jkey, 'tasks:' .. from, -1)
  redis.call('HINCRBY', jkey, 'tasks:' .. to, 1)
end
-- A task's progress counts toward its job's by the task's weight (its share of the work).
local function task_progress(tkey, jkey, progress)
  local old = tonumber(redis.call('HGET', tkey, 'progress') or '0')
  local weight = tonumber(redis.call('HGET', tkey, 'weight') or '0')
  redis.call('HSET', tkey, 'progress', string.format('%.4f', progress))
  local done = tonumber(redis.call('HINCRBYFLOAT', jkey, 'weightDone', string.format('%.6f', (progress - old) * weight)))
  local total = tonumber(redis.call('HGET', jkey, 'weightTotal') or '1')
  redis.call('HSET', jkey, 'progress', string.format('%.3f', math.min(1, math.max(0, done / total))))
end
-- A running task stops (its machine failed, gave it back or went silent): queued again while it
-- has attempts left (\`uncount\`: the attempt did not count), else its job fails with error_json.
-- Returns 'requeued', 'failed' or 'over' (the job had already ended).
local function stop_task(tkey, jkey, job_id, retry, uncount, error_json, queue_key, leases_key)
  local task_id = redis.call('HGET', tkey, 'id')
  redis.call('ZREM', leases_key, task_id)
  redis.call('HDEL', tkey, 'leaseExpiresAt', 'leaseMs')
  machine_finished(redis.call('HGET', tkey, 'machineId'), task_id)
  local jstate = redis.call('HGET', jkey, 'state')
  if jstate ~= cfg.running then
    move_task(tkey, jkey, cfg.t.running, cfg.t.canceled)
    return 'over'
  end
  local attempts = tonumber(redis.call('HGET', tkey, 'attempts') or '0')
  local max = tonumber(redis.call('HGET', tkey, 'maxAttempts') or '1')
  if uncount then
    attempts = attempts - 1
    redis.call('HSET', tkey, 'attempts', attempts)
  end
  if retry and attempts < max then
    move_task(tkey, jkey, cfg.t.running, cfg.t.pending)
    redis.call('ZADD', queue_key, redis.call('HGET', tkey, 'queueScore') or '0', task_id)
    return 'requeued'
  end
  move_task(tkey, jkey, cfg.t.running, cfg.t.canceled)
  set_state(jkey, job_id, jstate, cfg.failed)
  redis.call('HSET', jkey, 'error', error_json, 'finishedAt', cfg.now)
  redis.call('HDEL', jkey, 'stage')
  return 'failed'
end
`;

export const script = (body: string) => `${prelude}\n${body}`;

/** KEYS: allJobs, queue, uploadDeadlines. */
export const createJobScript = script(`
if redis.call('EXISTS', cfg.jobKey) == 1 then return reply({created = false, job = job_flat(cfg.jobKey)}) end
redis.call('HSET', cfg.jobKey, unpack(cfg.fields))
redis.call('ZADD', KEYS[1], cfg.now, cfg.id)
redis.call('ZADD', cfg.statePrefix .. cfg.state, cfg.now, cfg.id)
if cfg.enqueue then redis.call('ZADD', KEYS[2], cfg.now, cfg.id) end
if cfg.uploadExpiresAt then redis.call('ZADD', KEYS[3], cfg.uploadExpiresAt, cfg.id) end
return reply({created = true, job = job_flat(cfg.jobKey)})
`);

/** KEYS: none. */
export const readJobScript = script(`
return reply({job = job_flat(cfg.jobKey)})
`);

/**
 * KEYS: queue, uploadDeadlines, purges. Only `cfg.from` (awaiting_upload) moves; anything else is
 * a replay, except that an object arriving for a deleted job (a presigned PUT used after the
 * delete) sends the job back to the purge queue so that object goes too.
 */
export const markUploadedScript = script(`
local state = redis.call('HGET', cfg.jobKey, 'state')
if not state then return reply({result = 'unknown'}) end
if state == cfg.deleted then
  redis.call('HSET', cfg.jobKey, 'purgeNotBefore', cfg.now)
  redis.call('HDEL', cfg.jobKey, 'purgedAt')
  redis.call('ZADD', KEYS[3], cfg.now, cfg.id)
  return reply({result = 'duplicate', job = job_flat(cfg.jobKey)})
end
if not includes(cfg.from, state) then return reply({result = 'duplicate', job = job_flat(cfg.jobKey)}) end
set_state(cfg.jobKey, cfg.id, state, cfg.to)
redis.call('HSET', cfg.jobKey, 'queuedAt', cfg.now, 'uploadedAt', cfg.now)
if cfg.sizeBytes then redis.call('HSET', cfg.jobKey, 'inputSizeBytes', cfg.sizeBytes) end
if cfg.eTag then redis.call('HSET', cfg.jobKey, 'inputETag', cfg.eTag) end
redis.call('ZADD', KEYS[1], cfg.now, cfg.id)
redis.call('ZREM', KEYS[2], cfg.id)
return reply({result = 'queued', job = job_flat(cfg.jobKey)})
`);

/**
 * KEYS: queue, leases. Pop + running + attempts+1 + lease + machine busy, all in one script:
 * there is no moment in which a popped job is neither queued nor leased. The claimer's machine
 * hash records it as busy, but only admission (registration) and reconciliation with Fly's list
 * put a machine in the pool, so a claimer Fly does not know never counts against the cap.
 */
export const claimScript = script(`
local mstate = redis.call('HGET', cfg.machineKey, 'state')
if mstate == cfg.m.stopping or mstate == cfg.m.stopped then return reply({claimed = false}) end
local function lease_to_machine(id)
  redis.call('ZADD', KEYS[2], cfg.leaseExpiresAt, id)
  redis.call('HSET', cfg.machineKey, 'state', cfg.m.busy, 'jobId', id, 'updatedAt', cfg.now)
  redis.call('HSETNX', cfg.machineKey, 'createdAt', cfg.now)
  redis.call('HSETNX', cfg.machineKey, 'startedAt', cfg.now)
end
-- What a machine needs of the job to work on it, or on one of its tasks (\`extra\`).
local function claimed(job_id, key, attempt, extra)
  local answer = {claimed = true, jobId = job_id, attempt = attempt, preset = redis.call('HGET', key, 'preset'),
    inputKey = redis.call('HGET', key, 'inputKey'), playback = redis.call('HGET', key, 'playback'),
    loudness = redis.call('HGET', key, 'loudness'),
    source = redis.call('HMGET', key, 'sourceUrl', 'sourceMaxBytes', 'sourceAllowLoopback'),
    leaseExpiresAt = cfg.leaseExpiresAt}
  for k, v in pairs(extra) do answer[k] = v end
  return reply(answer)
end
for _ = 1, 100 do
  local popped = redis.call('ZPOPMIN', KEYS[1])
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
`);

/**
 * KEYS: queue, leases. A machine event applies only while the job is `cfg.from` (running) and held
 * by this (machineId, attempt); otherwise the machine is told to abort, except for an exact replay
 * of the event that made the job terminal (`cfg.replayState`), which changes nothing.
 */
export const machineEventScript = script(`
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
  redis.call('ZADD', KEYS[2], expires, cfg.id)
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
  redis.call('ZREM', KEYS[2], cfg.id)
  redis.call('HDEL', cfg.jobKey, 'leaseExpiresAt', 'leaseMs')
  if to == cfg.queuedState then
    if cfg.uncountAttempt then redis.call('HINCRBY', cfg.jobKey, 'attempts', -1) end
    redis.call('ZADD', KEYS[1], redis.call('HGET', cfg.jobKey, 'queuedAt') or cfg.now, cfg.id)
  else
    redis.call('HSET', cfg.jobKey, 'finishedAt', cfg.now)
    terminal = includes(cfg.terminalStates, to)
  end
  machine_finished(cfg.machineId, cfg.id)
end
return reply({action = 'continue', changed = true, terminal = terminal, job = job_flat(cfg.jobKey)})
`);

/** KEYS: queue, leases, uploadDeadlines. */
export const cancelScript = script(`
local state = redis.call('HGET', cfg.jobKey, 'state')
if not state then return reply({result = 'not_found'}) end
if not includes(cfg.from, state) then return reply({result = 'invalid_state', job = job_flat(cfg.jobKey)}) end
if state == cfg.running then end_attempt(cfg.jobKey, cfg.now, cfg.to) end
set_state(cfg.jobKey, cfg.id, state, cfg.to)
redis.call('ZREM', KEYS[1], cfg.id)
redis.call('ZREM', KEYS[2], cfg.id)
redis.call('ZREM', KEYS[3], cfg.id)
redis.call('HDEL', cfg.jobKey, 'leaseExpiresAt', 'leaseMs')
redis.call('HSET', cfg.jobKey, 'finishedAt', cfg.now)
return reply({result = 'ok', job = job_flat(cfg.jobKey)})
`);

/**
 * KEYS: queue, leases, uploadDeadlines, allJobs, purges. Delete: the tombstone is written first
 * (state `deleted`, `deletedAt`, outputs gone from the record, out of every index but its state's)
 * and the job joins the purge queue; its objects are removed afterwards (deletion/purge.ts), so a
 * store failure halfway leaves a tombstone the cron finishes. A running job's machine gets `abort`
 * on its next event; its objects are purged again once its lease has run out (`purgeNotBefore`),
 * after which it cannot have written anything more. Deleting a deleted job is `already`.
 */
export const deleteJobScript = script(`
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
redis.call('ZREM', KEYS[1], cfg.id)
redis.call('ZREM', KEYS[2], cfg.id)
redis.call('ZREM', KEYS[3], cfg.id)
redis.call('ZREM', KEYS[4], cfg.id)
redis.call('HDEL', cfg.jobKey, 'outputs', 'stage', 'leaseExpiresAt', 'leaseMs', 'liveMaster', 'playable')
redis.call('HSET', cfg.jobKey, 'deletedAt', cfg.now, 'purgeNotBefore', not_before)
redis.call('ZADD', KEYS[5], cfg.now, cfg.id)
return reply({result = 'ok', job = job_flat(cfg.jobKey)})
`);

/** KEYS: purges. Deleted jobs whose objects are due to be removed, oldest first. */
export const duePurgesScript = script(`
return reply({ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cfg.now, 'LIMIT', 0, cfg.limit)})
`);

/**
 * KEYS: purges. A purge pass that began at `cfg.startedAt` removed every object it found. It
 * settles the job only if nothing could have written after it began (`purgeNotBefore`), else the
 * job stays queued for a pass at that time.
 */
export const finishPurgeScript = script(`
local state = redis.call('HGET', cfg.jobKey, 'state')
if state ~= cfg.deleted then
  redis.call('ZREM', KEYS[1], cfg.id)
  return reply({purged = false})
end
local not_before = tonumber(redis.call('HGET', cfg.jobKey, 'purgeNotBefore') or '0')
if not_before > tonumber(cfg.startedAt) then
  redis.call('ZADD', KEYS[1], string.format('%d', not_before), cfg.id)
  return reply({purged = false})
end
redis.call('ZREM', KEYS[1], cfg.id)
redis.call('HDEL', cfg.jobKey, 'multipartUploadId', 'multipartPartBytes')
redis.call('HSET', cfg.jobKey, 'purgedAt', cfg.now)
return reply({purged = true})
`);

/**
 * KEYS: queue. A job canceled before its upload event arrived is retried too: the object may
 * have landed since, and a machine that cannot find it fails the job with `input_missing`.
 */
export const retryScript = script(`
local state = redis.call('HGET', cfg.jobKey, 'state')
if not state then return reply({result = 'not_found'}) end
if not includes(cfg.from, state) then
  return reply({result = 'invalid_state', job = job_flat(cfg.jobKey)})
end
set_state(cfg.jobKey, cfg.id, state, cfg.to)
redis.call('HSET', cfg.jobKey, 'attempts', '0', 'progress', '0', 'queuedAt', cfg.now)
redis.call('HDEL', cfg.jobKey, 'error', 'stage', 'machineId', 'startedAt', 'finishedAt', 'leaseExpiresAt', 'leaseMs',
  'outputs', 'probe', 'callback')
redis.call('ZADD', KEYS[1], cfg.now, cfg.id)
return reply({result = 'ok', job = job_flat(cfg.jobKey)})
`);

/**
 * KEYS: leases, queue. Running jobs whose lease passed go back to the queue (attempts already
 * counted their claim) or, once `attempts >= maxAttempts`, fail with `cfg.errorJson`.
 */
export const recoverLeasesScript = script(`
local now = tonumber(cfg.now)
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cfg.now, 'LIMIT', 0, cfg.limit)
local requeued, failed = {}, {}
for _, id in ipairs(ids) do
  local job_id = job_of_task(id)
  local key = job_id and cfg.taskPrefix .. id or cfg.jobPrefix .. id
  redis.call('ZREM', KEYS[1], id)
  local state = redis.call('HGET', key, 'state')
  local expires = tonumber(redis.call('HGET', key, 'leaseExpiresAt') or '0')
  local running = job_id and cfg.t.running or cfg.running
  if state == running and expires > now then
    redis.call('ZADD', KEYS[1], expires, id)
  elseif job_id and state == running then
    local jkey = cfg.jobPrefix .. job_id
    local heard = expires - tonumber(redis.call('HGET', key, 'leaseMs') or '0')
    end_attempt_of(key, jkey, string.format('%d', math.max(heard, tonumber(redis.call('HGET', key, 'startedAt') or heard))),
      'lease_expired', redis.call('HGET', key, 'name'))
    local outcome = stop_task(key, jkey, job_id, true, false, cfg.errorJson, KEYS[2], KEYS[1])
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
      redis.call('ZADD', KEYS[2], redis.call('HGET', key, 'queuedAt') or cfg.now, id)
      table.insert(requeued, id)
    end
    machine_finished(machine_id, id)
  end
end
return reply({requeued = requeued, failed = failed})
`);

/** KEYS: uploadDeadlines. */
export const expireUploadsScript = script(`
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cfg.now, 'LIMIT', 0, cfg.limit)
local expired = {}
for _, id in ipairs(ids) do
  local key = cfg.jobPrefix .. id
  redis.call('ZREM', KEYS[1], id)
  local state = redis.call('HGET', key, 'state')
  if state and includes(cfg.from, state) then
    set_state(key, id, state, cfg.to)
    redis.call('HSET', key, 'finishedAt', cfg.now)
    table.insert(expired, id)
  end
end
return reply({expired = expired})
`);

/**
 * KEYS: the index to list. Keyset pagination, newest first: the cursor is the last returned
 * `(score, id)`; equal scores come in reverse id order, as ZREVRANGEBYSCORE returns them.
 */
export const listJobsScript = script(`
local limit = tonumber(cfg.limit)
local collected = {}
local offset = 0
local max_score = cfg.cursorScore or '+inf'
while #collected <= limit do
  local batch = redis.call('ZREVRANGEBYSCORE', KEYS[1], max_score, '-inf', 'WITHSCORES', 'LIMIT', offset, limit + 1)
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
`);

/**
 * KEYS: queue, running index, machines, admission. `cfg.hours` are the hour starts of the last 30
 * days, newest first; the first `cfg.dayHours` of them make the last 24 hours.
 */
export const statsScript = script(`
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
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local machines = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  local state = redis.call('HGET', cfg.machinePrefix .. id, 'state') or 'unknown'
  machines[state] = (machines[state] or 0) + 1
end
return reply({queued = redis.call('ZCARD', KEYS[1]), running = redis.call('ZCARD', KEYS[2]),
  oldestQueuedAt = oldest[2] or false, machines = machines, admission = redis.call('HGETALL', KEYS[4]),
  usage = {day = day, month = month, storedBytes = tonumber(redis.call('GET', cfg.storedBytesKey) or '0')}})
`);

/** No KEYS. Takes a job's package lock (`cfg.lockKey`) for `cfg.token` unless another holds it. */
export const lockPackageScript = script(`
local taken = redis.call('SET', cfg.lockKey, cfg.token, 'NX', 'PX', cfg.ttlMs)
return reply({locked = taken ~= false})
`);

/** No KEYS. Releases the package lock only if `cfg.token` still holds it (an expired one may be another's). */
export const unlockPackageScript = script(`
if redis.call('GET', cfg.lockKey) == cfg.token then redis.call('DEL', cfg.lockKey) end
return reply({})
`);

/**
 * No KEYS. A completed job's outputs, replaced after its package was republished; refused when the
 * job is no longer in `cfg.state` (deleted meanwhile).
 */
export const replaceOutputsScript = script(`
local state = redis.call('HGET', cfg.jobKey, 'state')
if not state then return reply({result = 'not_found'}) end
if state ~= cfg.state then return reply({result = 'invalid_state', job = job_flat(cfg.jobKey)}) end
redis.call('HSET', cfg.jobKey, 'outputs', cfg.outputs, 'updatedAt', cfg.now)
return reply({result = 'ok', job = job_flat(cfg.jobKey)})
`);

/** KEYS: none. Records client-callback delivery state without resurrecting a deleted job. */
export const recordCallbackScript = script(`
if redis.call('EXISTS', cfg.jobKey) == 0 then return reply({found = false}) end
redis.call('HSET', cfg.jobKey, 'callback', cfg.callback)
return reply({found = true})
`);

/**
 * KEYS: queue, leases (a running job or task each), machines, reservations. Admission control: decides how many
 * machines to bring up and holds their slots before any Fly call, so concurrent admissions can
 * never exceed `cfg.cap`. Stopped pool machines are restarted first (marked `starting` here);
 * only then are new machines reserved (a token each, expiring if the admitter dies).
 */
export const reserveMachinesScript = script(`
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', cfg.now)
local cap = tonumber(cfg.cap)
local queued = redis.call('ZCARD', KEYS[1])
local running = redis.call('ZCARD', KEYS[2])
local wanted = math.min(cap, queued + running)
local ids = redis.call('SMEMBERS', KEYS[3])
local active, stopped = 0, {}
for _, id in ipairs(ids) do
  if redis.call('HGET', cfg.machinePrefix .. id, 'state') == cfg.m.stopped then table.insert(stopped, id)
  else active = active + 1 end
end
local reserved = redis.call('ZCARD', KEYS[4])
local need = wanted - active - reserved
local start, create = {}, {}
if need > 0 then
  for _, id in ipairs(stopped) do
    if #start >= need then break end
    redis.call('HSET', cfg.machinePrefix .. id, 'state', cfg.m.starting, 'startedAt', cfg.now, 'updatedAt', cfg.now)
    table.insert(start, id)
  end
  local room = cap - #ids - reserved
  local n = math.min(need - #start, room)
  for i = 1, n do
    local token = cfg.tokens[i]
    if not token then break end
    redis.call('ZADD', KEYS[4], cfg.reservationExpiresAt, token)
    table.insert(create, token)
  end
end
return reply({start = start, create = create, wanted = wanted, active = active, queued = queued, running = running})
`);

/** KEYS: machines, reservations. A created machine takes its reserved slot's place in the pool. */
export const registerMachineScript = script(`
redis.call('ZREM', KEYS[2], cfg.token)
redis.call('SADD', KEYS[1], cfg.machineId)
redis.call('HSETNX', cfg.machineKey, 'state', cfg.m.starting)
redis.call('HSETNX', cfg.machineKey, 'createdAt', cfg.now)
redis.call('HSETNX', cfg.machineKey, 'startedAt', cfg.now)
redis.call('HSET', cfg.machineKey, 'flyState', cfg.flyState, 'name', cfg.name, 'region', cfg.region, 'updatedAt', cfg.now)
return reply({ok = true})
`);

/** KEYS: admission. */
export const recordAdmissionErrorScript = script(`
redis.call('HSET', KEYS[1], 'lastError', cfg.error, 'lastErrorStatus', cfg.status, 'lastErrorAt', cfg.now)
return reply({ok = true})
`);

/** KEYS: reservations. */
export const releaseReservationScript = script(`
redis.call('ZREM', KEYS[1], cfg.token)
return reply({ok = true})
`);

/**
 * KEYS: machines. A Fly start or stop that failed: a machine Fly does not have leaves the pool;
 * otherwise it goes back from `cfg.pendingState` (starting/stopping) to `cfg.fallbackState`
 * (stopped, to be reused later / idle, its clock unchanged) with the error kept.
 */
export const machineCallFailedScript = script(`
if cfg.gone then
  redis.call('SREM', KEYS[1], cfg.machineId)
  redis.call('DEL', cfg.machineKey)
  return reply({ok = true})
end
if redis.call('HGET', cfg.machineKey, 'state') == cfg.pendingState then
  redis.call('HSET', cfg.machineKey, 'state', cfg.fallbackState, 'updatedAt', cfg.now)
end
redis.call('HSET', cfg.machineKey, 'lastError', cfg.error)
return reply({ok = true})
`);

/**
 * KEYS: none. Idle stop as compare-and-set: only a machine without a job, idle (or never past
 * starting) since max(lastJobFinishedAt, startedAt) for at least `cfg.idleMs`, becomes stopping.
 * Heartbeats and polls never touch either clock, so they cannot keep a machine alive.
 */
export const markStoppingScript = script(`
local state = redis.call('HGET', cfg.machineKey, 'state')
if state ~= cfg.m.idle and state ~= cfg.m.starting then return reply({stopping = false}) end
if redis.call('HEXISTS', cfg.machineKey, 'jobId') == 1 then return reply({stopping = false}) end
local since = math.max(tonumber(redis.call('HGET', cfg.machineKey, 'lastJobFinishedAt') or '0'),
  tonumber(redis.call('HGET', cfg.machineKey, 'startedAt') or '0'),
  tonumber(redis.call('HGET', cfg.machineKey, 'createdAt') or '0'))
if tonumber(cfg.now) - since < tonumber(cfg.idleMs) then return reply({stopping = false}) end
redis.call('HSET', cfg.machineKey, 'state', cfg.m.stopping, 'updatedAt', cfg.now)
return reply({stopping = true})
`);

/**
 * KEYS: machines. Brings the pool in line with Fly's list: machines Fly no longer has leave the
 * pool (after `cfg.graceMs`, since a just-created machine may not be listed yet), machines Fly
 * reports stopped are `stopped` (reused first by admission), running ones we did not know are
 * adopted.
 */
export const reconcilePoolScript = script(`
local now = tonumber(cfg.now)
local fly = {}
for _, fm in ipairs(cfg.fly) do fly[fm.id] = fm end
local removed, stopped = {}, {}
local known = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  known[id] = true
  local key = cfg.machinePrefix .. id
  local fm = fly[id]
  local state = redis.call('HGET', key, 'state')
  local created = tonumber(redis.call('HGET', key, 'createdAt') or '0')
  local started = tonumber(redis.call('HGET', key, 'startedAt') or '0')
  if not fm or fm.phase == cfg.phase.gone then
    if fm or now - created >= tonumber(cfg.graceMs) then
      redis.call('SREM', KEYS[1], id)
      redis.call('DEL', key)
      table.insert(removed, id)
    end
  else
    redis.call('HSET', key, 'flyState', fm.flyState)
    if fm.phase == cfg.phase.stopped then
      local just_started = state == cfg.m.starting and now - started < tonumber(cfg.graceMs)
      if state ~= cfg.m.stopped and not just_started then
        redis.call('HSET', key, 'state', cfg.m.stopped, 'updatedAt', cfg.now)
        redis.call('HDEL', key, 'jobId')
        table.insert(stopped, id)
      end
    elseif fm.phase == cfg.phase.started then
      if state == cfg.m.stopped then
        redis.call('HSET', key, 'state', cfg.m.idle, 'startedAt', cfg.now, 'updatedAt', cfg.now)
      elseif state == cfg.m.starting then
        redis.call('HSET', key, 'state', cfg.m.idle, 'updatedAt', cfg.now)
      end
    end
  end
end
local adopted = {}
for _, fm in ipairs(cfg.fly) do
  if not known[fm.id] and fm.phase ~= cfg.phase.gone then
    local key = cfg.machinePrefix .. fm.id
    redis.call('SADD', KEYS[1], fm.id)
    if fm.phase == cfg.phase.stopped then
      redis.call('HSET', key, 'state', cfg.m.stopped)
      redis.call('HDEL', key, 'jobId')
    else
      -- a machine that already claimed a job before it was known stays busy
      redis.call('HSETNX', key, 'state', cfg.m.idle)
    end
    redis.call('HSET', key, 'flyState', fm.flyState, 'name', fm.name or '', 'region', fm.region or '', 'updatedAt', cfg.now)
    redis.call('HSETNX', key, 'createdAt', cfg.now)
    redis.call('HSETNX', key, 'startedAt', cfg.now)
    table.insert(adopted, fm.id)
  end
end
return reply({removed = removed, stopped = stopped, adopted = adopted})
`);

/** KEYS: machines. The whole pool as raw hashes. */
export const readPoolScript = script(`
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local flat = redis.call('HGETALL', cfg.machinePrefix .. id)
  table.insert(flat, 'id')
  table.insert(flat, id)
  table.insert(out, flat)
end
return reply({machines = out})
`);

/** KEYS: none. The job's upload fields, for the multipart endpoints (see uploads.ts). */
export const readUploadScript = script(`
local v = redis.call('HMGET', cfg.jobKey, 'state', 'inputKey', 'inputSizeBytes', 'client', 'uploadExpiresAt',
  'multipartUploadId', 'multipartPartBytes')
return reply({v[1] or false, v[2] or false, v[3] or false, v[4] or false, v[5] or false, v[6] or false,
  v[7] or false})
`);

/** KEYS: none. Sets (`cfg.uploadId`) or clears (`cfg.expected`) the job's multipart upload, only while awaiting it. */
export const writeUploadScript = script(`
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
`);

/** Each client's scripts, made once: a script's text is sent only when Redis does not know its SHA yet. */
const loaded = new WeakMap<StateRedis, Map<string, LoadedScript>>();

/**
 * Runs a script with its config and returns the decoded JSON answer. `EVALSHA` first, `EVAL` when
 * Redis answers NOSCRIPT (the Upstash client's `Script.exec`), so a call costs the config's bytes,
 * not the script's. The Upstash client may or may not have JSON-parsed the reply already
 * (automaticDeserialization), so both are accepted.
 */
export async function runScript<T>(redis: StateRedis, lua: string, keys: string[], cfg: object): Promise<T> {
  const scripts = loaded.get(redis) ?? new Map<string, LoadedScript>();
  loaded.set(redis, scripts);
  const script = scripts.get(lua) ?? redis.createScript(lua);
  scripts.set(lua, script);
  const raw: unknown = await script.exec(keys, [JSON.stringify(cfg)]);
  return (typeof raw === "string" ? JSON.parse(raw) : raw) as T;
}

/** cjson encodes an empty Lua table as `{}`; lists come back as arrays only when non-empty. */
export const asList = <T>(value: unknown): T[] => (Array.isArray(value) ? (value as T[]) : []);

/** A raw HGETALL array as a record of strings. */
export function flatToRecord(flat: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  const list = asList<unknown>(flat);
  for (let i = 0; i + 1 < list.length; i += 2) out[String(list[i])] = String(list[i + 1]);
  return out;
}
