-- A PROTOTYPE, not used by the service: the dedup records of one event type
-- in one hash per time bucket instead of a key per id. KEYS[1] the current
-- bucket, KEYS[2] the previous one (a bucket as wide as the window: an id
-- is looked up in both, so it is remembered for at least the window),
-- then each event's stream; ARGV[1] the bucket's time to live (two
-- windows), ARGV[2] the event type, then four arguments per event as the
-- service's batch script has them (src/storage/ops.c); nested replies as
-- batch_nested.lua. For bench/redis_script_instr.sh only (docs/benchmarks.md,
-- "Redis's CPU per event on the batched path").
local cur, prevb, ttl, t, out = KEYS[1], KEYS[2], ARGV[1], ARGV[2], {}
local n = #KEYS - 2
for i = 1, n do
  local stream, a = KEYS[2 + i], 3 + (i - 1) * 4
  local dd, eid = ARGV[a] == '1', ARGV[a + 2]
  local prev = dd and (redis.call('HGET', cur, eid) or redis.call('HGET', prevb, eid))
  if prev then
    out[i] = {1, prev}
  else
    local id = redis.pcall('XADD', stream, '*', 'id', eid, 'type', t, 'event', ARGV[a + 3])
    if type(id) == 'table' and id.err then
      out[i] = {2, id.err}
    else
      if dd then
        redis.call('HSET', cur, eid, id .. ' ' .. ARGV[a + 1] .. ' ' .. stream)
      end
      out[i] = {0, id}
    end
  end
end
redis.call('PEXPIRE', cur, ttl)
return out
