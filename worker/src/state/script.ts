/**
 * How tcoder runs Lua in Redis. Each state change is one script, so it is atomic and checks the
 * current state before writing (compare-and-set); the scripts themselves are in scripts/, a file
 * per family (jobs, tasks, pool, uploads).
 *
 * `defineScript({keys, body})`: the fixed keys a script touches, by name (keys.ts spells them);
 * the body reads them as `K.<name>`. Everything else comes in ONE JSON config (`ARGV[1]`, decoded
 * into `cfg`) built in TypeScript: ids, per-id key prefixes from keys.ts, the state names and
 * allowed `from` states taken from the contract's `transitions`, and times as ms strings (so Lua
 * never formats a float into a key or field). Every script answers with one JSON document whose
 * fields are named; job records travel as raw HGETALL arrays inside it, so @upstash/redis'
 * automatic deserialization can never reinterpret a field value. Which Lua functions the scripts
 * use, and Upstash's word on each, is in lua-environment.md.
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
-- Every task hash a chunked job has (none for an unchunked one).
local function each_task(jkey, job_id, fn)
  for _, name in ipairs(cjson.decode(redis.call('HGET', jkey, 'tasks') or '[]')) do
    fn(cfg.taskPrefix .. job_id .. '/' .. name)
  end
end
-- The job ended (completed, failed, canceled): its task hashes go a day later, long after the last
-- live playlist pass that may still read them.
local function expire_tasks(jkey, job_id)
  each_task(jkey, job_id, function(tkey) redis.call('EXPIRE', tkey, 86400) end)
end
-- The job starts over (retry) or is gone (delete): nothing of its tasks is kept.
local function forget_tasks(jkey, job_id)
  each_task(jkey, job_id, function(tkey) redis.call('DEL', tkey) end)
  redis.call('HDEL', jkey, 'tasks', 'tasks:' .. cfg.t.pending, 'tasks:' .. cfg.t.running, 'tasks:' .. cfg.t.done,
    'tasks:' .. cfg.t.canceled, 'weightTotal', 'weightDone', 'finalizeSpec', 'finalizeWeight', 'liveMaster',
    'playable', 'liveDirty')
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
  expire_tasks(jkey, job_id)
  return 'failed'
end
`;

export interface StateScript {
  /** The whole text Redis runs: the shared helpers, the key table, the body. */
  readonly lua: string;
  /** Runs the script with `cfg` and returns its decoded JSON answer. */
  run<T>(redis: StateRedis, cfg: object): Promise<T>;
}

export function defineScript(spec: { keys?: Record<string, string>; body: string }): StateScript {
  const names = Object.keys(spec.keys ?? {});
  const keyTable = `local K = {${names.map((name, i) => `${name} = KEYS[${i + 1}]`).join(", ")}}`;
  const lua = `${prelude}\n${keyTable}\n${spec.body}`;
  const keyValues = Object.values(spec.keys ?? {});
  return { lua, run: <T>(redis: StateRedis, cfg: object) => runLua<T>(redis, lua, keyValues, cfg) };
}

/** Each client's scripts, made once: a script's text is sent only when Redis does not know its SHA yet. */
const loaded = new WeakMap<StateRedis, Map<string, LoadedScript>>();

/**
 * Runs a script with its config and returns the decoded JSON answer. `EVALSHA` first, `EVAL` when
 * Redis answers NOSCRIPT (the Upstash client's `Script.exec`), so a call costs the config's bytes,
 * not the script's. The Upstash client may or may not have JSON-parsed the reply already
 * (automaticDeserialization), so both are accepted.
 */
async function runLua<T>(redis: StateRedis, lua: string, keys: string[], cfg: object): Promise<T> {
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
