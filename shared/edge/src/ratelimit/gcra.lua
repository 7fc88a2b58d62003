-- GCRA over several keys, after lock checks: refuse if a lock applies or any rate is over;
-- else consume one from each rate.
-- ARGV[1] = number of rates, ARGV[2] = number of locks, then per rate its emission
-- interval (ms), burst and known member ("" for none), then the exempt member per lock
-- ("" for none).
-- KEYS: per rate its shared counter, its member's own counter and the set of known members;
-- then per lock its key and its exemption set.
-- Returns {allowed, retry_after_ms, remaining_1, reset_ms_1, remaining_2, reset_ms_2, ...}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = tonumber(ARGV[1])
local locks = tonumber(ARGV[2])
local retry = 0
for l = 1, locks do
  local ttl = redis.call('PTTL', KEYS[3 * n + 2 * l - 1])
  if ttl > 0 then
    local member = ARGV[2 + 3 * n + l]
    if member == '' or redis.call('SISMEMBER', KEYS[3 * n + 2 * l], member) == 0 then
      if ttl > retry then retry = ttl end
    end
  end
end
local keys = {}
local tats = {}
for i = 1, n do
  local emission = tonumber(ARGV[3 * i])
  local burst = tonumber(ARGV[3 * i + 1])
  local member = ARGV[3 * i + 2]
  local key = KEYS[3 * i - 2]
  if member ~= '' and redis.call('SISMEMBER', KEYS[3 * i], member) == 1 then
    key = KEYS[3 * i - 1]
  end
  keys[i] = key
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  tats[i] = tat
  local allow_at = tat + emission - burst * emission
  if now < allow_at and allow_at - now > retry then retry = allow_at - now end
end
local out = {}
local allowed = retry == 0
if allowed then out[1] = 1 else out[1] = 0 end
out[2] = retry
for i = 1, n do
  local emission = tonumber(ARGV[3 * i])
  local burst = tonumber(ARGV[3 * i + 1])
  local tat = tats[i]
  if allowed then
    tat = tat + emission
    redis.call('SET', keys[i], tat, 'PX', tat - now)
  end
  local left = math.floor((now - (tat - burst * emission)) / emission)
  if left < 0 then left = 0 end
  out[#out + 1] = left
  out[#out + 1] = tat - now
end
return out
