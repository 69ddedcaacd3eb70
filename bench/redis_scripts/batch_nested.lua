-- The batch dedup script before 2026-12-07 (92cd013): per event KEYS stream,
-- dedup key; ARGV[1] window, then nine arguments per event (flag, publish
-- time and the XADD's tail: *, id, <id>, type, <type>, event, <envelope>);
-- one {code, value} table per event. For bench/redis_script_instr.sh only.
local out = {}
for i = 1, #KEYS / 2 do
  local stream, dkey, a = KEYS[2 * i - 1], KEYS[2 * i], 2 + (i - 1) * 9
  local prev = ARGV[a] == '1' and redis.call('GET', dkey)
  if prev then
    out[i] = {1, prev}
  else
    local id = redis.pcall('XADD', stream, unpack(ARGV, a + 2, a + 8))
    if type(id) == 'table' and id.err then
      out[i] = {2, id.err}
    else
      if ARGV[a] == '1' then
        redis.call('SET', dkey, id .. ' ' .. ARGV[a + 1] .. ' ' .. stream, 'PX', ARGV[1])
      end
      out[i] = {0, id}
    end
  end
end
return out
