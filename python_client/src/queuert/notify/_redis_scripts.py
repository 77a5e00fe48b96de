"""The Redis notifier's Lua scripts: a batch of hints sent (budgets topped
up, events published) and wake-budget units taken, each atomic on the
server."""

from __future__ import annotations

import hashlib

__all__ = ["SEND", "SEND_SHA", "TAKE", "TAKE_SHA"]

# KEYS: budget keys, one per ready type (all in one slot: hash tag {prefix})
# ARGV: ttl ms, the job_ready channel, (count, type name) per key, then
# (channel, payload) pairs of the other events.
SEND = """
local n = #KEYS
for i = 1, n do
  redis.call('INCRBY', KEYS[i], ARGV[1 + 2 * i])
  redis.call('PEXPIRE', KEYS[i], ARGV[1])
end
for i = 1, n do
  redis.call('PUBLISH', ARGV[2], ARGV[2 + 2 * i])
end
for i = 3 + 2 * n, #ARGV, 2 do
  redis.call('PUBLISH', ARGV[i], ARGV[i + 1])
end
return n
"""

# KEYS: budget keys in the caller's order; ARGV[1]: the units wanted (one
# for a take, more for a lone listener's owed units). Takes up to that many,
# the first key's first; returns how many it took.
TAKE = """
local want = tonumber(ARGV[1])
local taken = 0
for _, key in ipairs(KEYS) do
  if taken >= want then break end
  local units = tonumber(redis.call('GET', key) or '0') or 0
  if units > 0 then
    local k = math.min(units, want - taken)
    if k == units then redis.call('DEL', key) else redis.call('DECRBY', key, k) end
    taken = taken + k
  end
end
return taken
"""


SEND_SHA = hashlib.sha1(SEND.encode()).hexdigest()
TAKE_SHA = hashlib.sha1(TAKE.encode()).hexdigest()
