/** The Lua scripts of the machine pool (pool.ts): admission, registration, idle stop, reconciliation; with the conventions of script.ts. */

import { keys } from "../keys.ts";
import { defineScript } from "../script.ts";

/**
 * Admission control: decides how many
 * machines to bring up and holds their slots before any Fly call, so concurrent admissions can
 * never exceed `cfg.cap`. Stopped pool machines are restarted first (marked `starting` here);
 * only then are new machines reserved (a token each, expiring if the admitter dies).
 */
export const reserveMachinesScript = defineScript({
  keys: { queue: keys.queue, leases: keys.leases, machines: keys.machines, reservations: keys.machineReservations },
  body: `
redis.call('ZREMRANGEBYSCORE', K.reservations, '-inf', cfg.now)
local cap = tonumber(cfg.cap)
local queued = redis.call('ZCARD', K.queue)
local running = redis.call('ZCARD', K.leases)
local wanted = math.min(cap, queued + running)
local ids = redis.call('SMEMBERS', K.machines)
local active, stopped = 0, {}
for _, id in ipairs(ids) do
  if redis.call('HGET', cfg.machinePrefix .. id, 'state') == cfg.m.stopped then table.insert(stopped, id)
  else active = active + 1 end
end
local reserved = redis.call('ZCARD', K.reservations)
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
    redis.call('ZADD', K.reservations, cfg.reservationExpiresAt, token)
    table.insert(create, token)
  end
end
return reply({start = start, create = create, wanted = wanted, active = active, queued = queued, running = running})
`,
});

/** A created machine takes its reserved slot's place in the pool. */
export const registerMachineScript = defineScript({
  keys: { machines: keys.machines, reservations: keys.machineReservations },
  body: `
redis.call('ZREM', K.reservations, cfg.token)
redis.call('SADD', K.machines, cfg.machineId)
redis.call('HSETNX', cfg.machineKey, 'state', cfg.m.starting)
redis.call('HSETNX', cfg.machineKey, 'createdAt', cfg.now)
redis.call('HSETNX', cfg.machineKey, 'startedAt', cfg.now)
redis.call('HSET', cfg.machineKey, 'flyState', cfg.flyState, 'name', cfg.name, 'region', cfg.region, 'updatedAt', cfg.now)
return reply({ok = true})
`,
});

export const recordAdmissionErrorScript = defineScript({
  keys: { admission: keys.admission },
  body: `
redis.call('HSET', K.admission, 'lastError', cfg.error, 'lastErrorStatus', cfg.status, 'lastErrorAt', cfg.now)
return reply({ok = true})
`,
});

export const releaseReservationScript = defineScript({
  keys: { reservations: keys.machineReservations },
  body: `
redis.call('ZREM', K.reservations, cfg.token)
return reply({ok = true})
`,
});

/**
 * A Fly start or stop that failed: a machine Fly does not have leaves the pool;
 * otherwise it goes back from `cfg.pendingState` (starting/stopping) to `cfg.fallbackState`
 * (stopped, to be reused later / idle, its clock unchanged) with the error kept.
 */
export const machineCallFailedScript = defineScript({
  keys: { machines: keys.machines },
  body: `
if cfg.gone then
  redis.call('SREM', K.machines, cfg.machineId)
  redis.call('DEL', cfg.machineKey)
  return reply({ok = true})
end
if redis.call('HGET', cfg.machineKey, 'state') == cfg.pendingState then
  redis.call('HSET', cfg.machineKey, 'state', cfg.fallbackState, 'updatedAt', cfg.now)
end
redis.call('HSET', cfg.machineKey, 'lastError', cfg.error)
return reply({ok = true})
`,
});

/**
 * Idle stop as compare-and-set: only a machine without a job, idle (or never past
 * starting) since max(lastJobFinishedAt, startedAt) for at least `cfg.idleMs`, becomes stopping.
 * Heartbeats and polls never touch either clock, so they cannot keep a machine alive.
 */
export const markStoppingScript = defineScript({
  body: `
local state = redis.call('HGET', cfg.machineKey, 'state')
if state ~= cfg.m.idle and state ~= cfg.m.starting then return reply({stopping = false}) end
if redis.call('HEXISTS', cfg.machineKey, 'jobId') == 1 then return reply({stopping = false}) end
local since = math.max(tonumber(redis.call('HGET', cfg.machineKey, 'lastJobFinishedAt') or '0'),
  tonumber(redis.call('HGET', cfg.machineKey, 'startedAt') or '0'),
  tonumber(redis.call('HGET', cfg.machineKey, 'createdAt') or '0'))
if tonumber(cfg.now) - since < tonumber(cfg.idleMs) then return reply({stopping = false}) end
redis.call('HSET', cfg.machineKey, 'state', cfg.m.stopping, 'updatedAt', cfg.now)
return reply({stopping = true})
`,
});

/**
 * Brings the pool in line with Fly's list: machines Fly no longer has leave the
 * pool (after `cfg.graceMs`, since a just-created machine may not be listed yet), machines Fly
 * reports stopped are `stopped` (reused first by admission), running ones we did not know are
 * adopted.
 */
export const reconcilePoolScript = defineScript({
  keys: { machines: keys.machines },
  body: `
local now = tonumber(cfg.now)
local fly = {}
for _, fm in ipairs(cfg.fly) do fly[fm.id] = fm end
local removed, stopped = {}, {}
local known = {}
for _, id in ipairs(redis.call('SMEMBERS', K.machines)) do
  known[id] = true
  local key = cfg.machinePrefix .. id
  local fm = fly[id]
  local state = redis.call('HGET', key, 'state')
  local created = tonumber(redis.call('HGET', key, 'createdAt') or '0')
  local started = tonumber(redis.call('HGET', key, 'startedAt') or '0')
  if not fm or fm.phase == cfg.phase.gone then
    if fm or now - created >= tonumber(cfg.graceMs) then
      redis.call('SREM', K.machines, id)
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
    redis.call('SADD', K.machines, fm.id)
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
`,
});

/** The whole pool as raw hashes. */
export const readPoolScript = defineScript({
  keys: { machines: keys.machines },
  body: `
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', K.machines)) do
  local flat = redis.call('HGETALL', cfg.machinePrefix .. id)
  table.insert(flat, 'id')
  table.insert(flat, id)
  table.insert(out, flat)
end
return reply({machines = out})
`,
});
