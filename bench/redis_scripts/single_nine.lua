-- The single-event dedup script before 2026-12-07: ARGV[3..] the XADD's
-- tail (*, id, <id>, type, <type>, event, <envelope>).
-- For bench/redis_script_instr.sh only.
local prev = redis.call('GET', KEYS[2])
if prev then return {1, prev} end
local id = redis.call('XADD', KEYS[1], unpack(ARGV, 3))
redis.call('SET', KEYS[2], id .. ' ' .. ARGV[2] .. ' ' .. KEYS[1], 'PX', ARGV[1])
return {0, id}
