/**
 * The Lua scripts of chunked jobs (contract/tasks.ts), with the conventions of script.ts. The
 * claim and lease recovery of tasks live in scripts/jobs.ts next to the jobs' own (the same queue,
 * the same leases); the task helpers (`move_task`, `task_progress`, `stop_task`) are in the prelude.
 *
 * A task hash (`keys.task(<jobId>/<task>)`): `id`, `jobId`, `name`, `state` (contract TaskState),
 * `spec` (JSON TaskSpec), `weight` (its share of the job's progress), `queueScore` (where it
 * queues, again on a retry), `attempts`, `maxAttempts`, `machineId`, `startedAt`, `endedStartedAt`,
 * `leaseExpiresAt`, `leaseMs`, `progress`, `result` (JSON TaskResult), `createdAt`, `updatedAt`.
 * The job's hash adds `tasks` (JSON list of task names, finalize last), `tasks:<state>` counts,
 * `weightTotal`, `weightDone`, `finalizeSpec`, `finalizeWeight`, and once watchable `liveMaster`
 * and `playable`; `liveDirty` asks the live playlists' writer for another pass.
 */

import { keys } from "../keys.ts";
import { defineScript } from "../script.ts";

/**
 * The job's own attempt (probe, split) ends and its tasks are queued right
 * where the job was, in plan order, so every machine under the cap can take one. A replayed split
 * changes nothing.
 */
export const splitJobScript = defineScript({
  keys: { queue: keys.queue, leases: keys.leases },
  body: `
local state = redis.call('HGET', cfg.jobKey, 'state')
if not state then return reply({action = 'abort', changed = false, job = {}}) end
local ours = redis.call('HGET', cfg.jobKey, 'machineId') == cfg.machineId
  and tonumber(redis.call('HGET', cfg.jobKey, 'attempts') or '0') == tonumber(cfg.attempt)
if state ~= cfg.running or not ours then
  machine_finished(cfg.machineId, cfg.id)
  return reply({action = 'abort', changed = false, job = job_flat(cfg.jobKey)})
end
if redis.call('HEXISTS', cfg.jobKey, 'tasks') == 1 then
  return reply({action = 'continue', changed = false, job = job_flat(cfg.jobKey)})
end
end_attempt(cfg.jobKey, cfg.now, cfg.outcome)
redis.call('ZREM', K.leases, cfg.id)
redis.call('HDEL', cfg.jobKey, 'leaseExpiresAt', 'leaseMs')
local base = tonumber(redis.call('HGET', cfg.jobKey, 'queuedAt') or cfg.now)
local max = redis.call('HGET', cfg.jobKey, 'maxAttempts') or '1'
local names = {}
local weight_total = tonumber(cfg.finalizeWeight)
for i, t in ipairs(cfg.tasks) do
  local task_id = cfg.id .. '/' .. t.name
  local score = string.format('%.3f', base + i * 0.01)
  redis.call('DEL', cfg.taskPrefix .. task_id)
  redis.call('HSET', cfg.taskPrefix .. task_id, 'id', task_id, 'jobId', cfg.id, 'name', t.name, 'state', cfg.t.pending,
    'spec', t.spec, 'weight', t.weight, 'queueScore', score, 'attempts', '0', 'maxAttempts', max, 'progress', '0',
    'createdAt', cfg.now, 'updatedAt', cfg.now)
  redis.call('ZADD', K.queue, score, task_id)
  table.insert(names, t.name)
  weight_total = weight_total + tonumber(t.weight)
end
table.insert(names, cfg.finalizeName)
redis.call('HSET', cfg.jobKey, 'tasks', cjson.encode(names), 'tasks:' .. cfg.t.pending, #cfg.tasks,
  'tasks:' .. cfg.t.running, '0', 'tasks:' .. cfg.t.done, '0', 'tasks:' .. cfg.t.canceled, '0',
  'weightTotal', string.format('%.6f', weight_total), 'weightDone', '0', 'finalizeSpec', cfg.finalizeSpec,
  'finalizeWeight', cfg.finalizeWeight, 'probe', cfg.probe, 'stage', cfg.stage, 'progress', '0', 'updatedAt', cfg.now)
machine_finished(cfg.machineId, cfg.id)
return reply({action = 'continue', changed = true, job = job_flat(cfg.jobKey)})
`,
});

/**
 * An event about a task applies only while the task is running, held by this
 * (machineId, attempt), and its job is running; a task whose job ended (canceled, deleted, failed
 * by another task) is over and its machine told to abort. When every task but finalize is done,
 * finalize is queued ahead of everything (it completes a job); finalize's `completed` completes it.
 */
export const taskEventScript = defineScript({
  keys: { queue: keys.queue, leases: keys.leases },
  body: `
local tstate = redis.call('HGET', cfg.taskKey, 'state')
if not tstate then
  -- the job was deleted (or retried) and its tasks with it
  machine_finished(cfg.machineId, cfg.taskId)
  return reply({action = 'abort', changed = false, job = job_flat(cfg.jobKey)})
end
local ours = redis.call('HGET', cfg.taskKey, 'machineId') == cfg.machineId
  and tonumber(redis.call('HGET', cfg.taskKey, 'attempts') or '0') == tonumber(cfg.attempt)
if ours and tstate ~= cfg.t.running and cfg.replayState and tstate == cfg.replayState then
  return reply({action = 'continue', changed = false, job = job_flat(cfg.jobKey)})
end
if not ours or tstate ~= cfg.t.running then
  machine_finished(cfg.machineId, cfg.taskId)
  return reply({action = 'abort', changed = false, job = job_flat(cfg.jobKey)})
end
local jstate = redis.call('HGET', cfg.jobKey, 'state')
if jstate ~= cfg.running then
  end_attempt_of(cfg.taskKey, cfg.jobKey, cfg.now, jstate or 'deleted', cfg.task)
  stop_task(cfg.taskKey, cfg.jobKey, cfg.id, false, false, '', K.queue, K.leases)
  return reply({action = 'abort', changed = true, job = job_flat(cfg.jobKey)})
end
redis.call('HSET', cfg.jobKey, 'updatedAt', cfg.now)
if cfg.kind == 'heartbeat' or cfg.kind == 'progress' then
  local lease_ms = tonumber(redis.call('HGET', cfg.taskKey, 'leaseMs') or cfg.defaultLeaseMs)
  local expires = string.format('%d', tonumber(cfg.now) + lease_ms)
  redis.call('HSET', cfg.taskKey, 'leaseExpiresAt', expires, 'updatedAt', cfg.now)
  redis.call('ZADD', K.leases, expires, cfg.taskId)
  if cfg.kind == 'progress' then
    task_progress(cfg.taskKey, cfg.jobKey, tonumber(cfg.progress))
    redis.call('HSET', cfg.jobKey, 'stage', cfg.stage)
  end
  return reply({action = 'continue', changed = true, job = job_flat(cfg.jobKey)})
end
end_attempt_of(cfg.taskKey, cfg.jobKey, cfg.now, cfg.outcome, cfg.task)
if cfg.kind == 'failed' or cfg.kind == 'released' then
  local outcome = stop_task(cfg.taskKey, cfg.jobKey, cfg.id, cfg.retryable, cfg.kind == 'released', cfg.error,
    K.queue, K.leases)
  if outcome == 'failed' and cfg.probe then redis.call('HSET', cfg.jobKey, 'probe', cfg.probe) end
  return reply({action = 'continue', changed = true, terminal = outcome == 'failed', requeued = outcome == 'requeued',
    job = job_flat(cfg.jobKey)})
end
-- done (task_completed, or finalize's completed)
task_progress(cfg.taskKey, cfg.jobKey, 1)
move_task(cfg.taskKey, cfg.jobKey, cfg.t.running, cfg.t.done)
redis.call('HDEL', cfg.taskKey, 'leaseExpiresAt', 'leaseMs')
redis.call('ZREM', K.leases, cfg.taskId)
machine_finished(cfg.machineId, cfg.taskId)
if cfg.result then redis.call('HSET', cfg.taskKey, 'result', cfg.result) end
if cfg.kind == 'completed' then
  set_state(cfg.jobKey, cfg.id, jstate, cfg.completed)
  redis.call('HSET', cfg.jobKey, 'progress', '1', 'outputs', cfg.outputs, 'probe', cfg.probe, 'finishedAt', cfg.now)
  redis.call('HDEL', cfg.jobKey, 'stage')
  if cfg.usage then count_completion(cfg.jobKey, cfg.usage) end
  expire_tasks(cfg.jobKey, cfg.id)
  return reply({action = 'continue', changed = true, terminal = true, job = job_flat(cfg.jobKey)})
end
local names = cjson.decode(redis.call('HGET', cfg.jobKey, 'tasks') or '[]')
local done = tonumber(redis.call('HGET', cfg.jobKey, 'tasks:' .. cfg.t.done) or '0')
local finalize_queued = false
if done == #names - 1 then
  local task_id = cfg.id .. '/' .. cfg.finalizeName
  redis.call('HSET', cfg.taskPrefix .. task_id, 'id', task_id, 'jobId', cfg.id, 'name', cfg.finalizeName,
    'state', cfg.t.pending, 'spec', redis.call('HGET', cfg.jobKey, 'finalizeSpec'),
    'weight', redis.call('HGET', cfg.jobKey, 'finalizeWeight') or '0', 'queueScore', '0', 'attempts', '0',
    'maxAttempts', redis.call('HGET', cfg.jobKey, 'maxAttempts') or '1', 'progress', '0',
    'createdAt', cfg.now, 'updatedAt', cfg.now)
  redis.call('HINCRBY', cfg.jobKey, 'tasks:' .. cfg.t.pending, 1)
  redis.call('ZADD', K.queue, '0', task_id)
  finalize_queued = true
end
return reply({action = 'continue', changed = true, finalizeQueued = finalize_queued, job = job_flat(cfg.jobKey)})
`,
});

/** The job and every task it has so far, as raw hashes. */
export const readTasksScript = defineScript({
  body: `
local tasks = {}
for _, name in ipairs(cjson.decode(redis.call('HGET', cfg.jobKey, 'tasks') or '[]')) do
  local flat = redis.call('HGETALL', cfg.taskPrefix .. cfg.id .. '/' .. name)
  if #flat > 0 then table.insert(tasks, flat) end
end
return reply({job = job_flat(cfg.jobKey), tasks = tasks})
`,
});

/**
 * Asks for a pass of the live playlists' writer (`liveDirty`) and takes its lock unless
 * another writer holds it (that one then makes the pass).
 */
export const lockLiveScript = defineScript({
  body: `
if redis.call('EXISTS', cfg.jobKey) == 0 then return reply({locked = false}) end
redis.call('HSET', cfg.jobKey, 'liveDirty', '1')
local taken = redis.call('SET', cfg.lockKey, cfg.token, 'NX', 'PX', cfg.ttlMs)
return reply({locked = taken ~= false})
`,
});

/**
 * Ends a pass: with no pass asked for meanwhile, the lock is released (\`done\`); else it is
 * kept for another (\`again\`). A writer whose lock expired (\`lost\`) stops.
 */
export const endLivePassScript = defineScript({
  body: `
if redis.call('GET', cfg.lockKey) ~= cfg.token then return reply({next = 'lost'}) end
if redis.call('HEXISTS', cfg.jobKey, 'liveDirty') == 1 then
  redis.call('PEXPIRE', cfg.lockKey, cfg.ttlMs)
  return reply({next = 'again'})
end
redis.call('DEL', cfg.lockKey)
return reply({next = 'done'})
`,
});

/** A pass starts: it will see everything done until now. */
export const beginLivePassScript = defineScript({
  body: `
redis.call('HDEL', cfg.jobKey, 'liveDirty')
return reply({})
`,
});

/** The live playlists exist: the job shows them and becomes playable (while running or completed). */
export const markLiveScript = defineScript({
  body: `
local state = redis.call('HGET', cfg.jobKey, 'state')
if state ~= cfg.running and state ~= cfg.completed then return reply({marked = false}) end
redis.call('HSET', cfg.jobKey, 'liveMaster', cfg.liveMaster, 'playable', '1')
return reply({marked = true})
`,
});
