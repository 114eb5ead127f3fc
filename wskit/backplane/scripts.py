"""The Lua scripts of the Redis store, and how a batch of posts is cut for them.

Plain text and plain functions: :class:`~wskit.backplane.store.RedisStore` runs
them on one Redis or a Redis Cluster. The append script's envelope is built from
:mod:`wskit.core.envelope`'s Lua fragments, so it is the envelope Python writes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..core.envelope import LUA_END, LUA_HEAD, LUA_TAIL
from ..core.history import ID_WINDOW, Repeat, new_epoch
from ..exceptions import BackplaneUnavailable
from .base import RoomPost, Sent

__all__ = ["sources", "runs", "append_keys", "append_args", "sent_of", "MAX_RUN"]

# History: KEY:meta is a hash (s: top offset, e: epoch), KEY:stream a stream whose
# entry ids are "OFFSET-0", so XRANGE by offset needs no index. Offset, storage
# and publication happen in one script: they can never disagree, and Redis
# publishes in offset order. (A cluster needs KEY and the channel in one hash
# slot: KEY carries a hash tag.)
#
# One call stores a run of consecutive posts to the room (their frames, then their
# signatures, from ARGV[9]; a signature is stored in the entry's 'g' field and
# written into the envelope, wskit.security.signing): the lookups,
# the counter and the expiries are paid once per run, not once per post. Each post
# is still its own stream entry and its own publication, so nothing downstream
# knows a run from single posts. On fakeredis, where every command is emulated in
# Python, a run of 15 costs a quarter per post of 15 single calls (docs/benchmarks.md).
#
# Epochs. A read of a history that does not exist writes nothing (joins and
# history reads of rooms nobody posts in left a key each, with an hour's TTL) and
# answers top 0 with the epoch the first post *will* take: the history's unborn
# epoch, a hash of (KEY:meta, the server's lifetime, TIME // ttl), so that a client who
# joined an empty room and then sees its first post sees no change of epoch. It
# still changes whenever a history is lost: a restarted Redis has a new run_id (the
# server's lifetime: INFO's run_id, or the token of an in-process fakeredis), and a
# history that expired lived ttl s at least, so the next one is born in a later
# TIME // ttl. (A first post in the next period after an empty read does change
# the epoch: visible to that client as a reset, never a silent gap.) A server that
# cannot name its lifetime (fakeredis over TCP, an injected fakeredis client) gets
# the old rule: the read stores a random epoch.
_UNBORN = """
local function unborn(meta, lifetime, ttl)
  if lifetime == '' then
    local info = redis.pcall('INFO', 'server')
    if type(info) ~= 'string' then return nil end
    lifetime = string.match(info, 'run_id:(%x+)')
    if not lifetime then return nil end
  end
  local period = math.floor(tonumber(redis.call('TIME')[1]) / ttl)
  -- a 32-bit polynomial hash (exact in doubles; fakeredis's Lua has no sha1hex)
  local text, h = meta .. '|' .. lifetime .. '|' .. period, 0
  for i = 1, #text do h = (h * 31 + string.byte(text, i)) % 4294967296 end
  return string.format('%08x', h)
end

-- The replication history this server's data descends from (INFO's master_replid;
-- nil where INFO is not scriptable: fakeredis, which never fails over).
local function replid()
  local info = redis.pcall('INFO', 'replication')
  if type(info) ~= 'string' then return nil end
  return string.match(info, 'master_replid:(%w+)')
end

-- A history is trusted only under the replication id it was written under
-- (KEY:meta's r). A promoted replica (or a restart) has a new one, and may lack
-- posts the old primary acknowledged: their offsets would be given again, to new
-- posts, and clients would drop those as duplicates. So its epoch is replaced by
-- ``fresh``: every client sees a new epoch (history_reset, recovered false). The
-- counter goes on, so KEY:meta's b records where the new epoch starts: an instance
-- that was not listening then reads what the new epoch holds from there.
local function continued(meta, fresh)
  local epoch = redis.call('HGET', meta, 'e')
  if not epoch then return nil end
  local rid = replid()
  if not rid then return epoch end
  local was = redis.call('HGET', meta, 'r')
  if was == rid then return epoch end
  if was then  -- (a history of before 'r' existed is adopted as it is)
    epoch = fresh
    redis.call('HSET', meta, 'b', redis.call('HGET', meta, 's') or '0')
  end
  redis.call('HSET', meta, 'e', epoch, 'r', rid)
  return epoch
end

local function adopt(meta)
  local rid = replid()
  if rid then redis.call('HSET', meta, 'r', rid) end
end
"""

# Ids (wskit.core.history): a post with an id has a token (user and id); KEY:ids
# maps token -> offset and KEY:idq orders the tokens by when they were stored
# (Redis's TIME), so the oldest are forgotten first, a few per call, once their
# post has left the stream and ID_WINDOW has passed. A token already in KEY:ids is
# a repeat: nothing is stored or published, and the script returns the first
# post's offset, negated, in that post's place. ARGV[7] is '' when no post of the
# run has an id: the usual run pays nothing for ids.
_APPEND = _UNBORN + """
local meta, stream, ids, idq = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local epoch = continued(meta, ARGV[4])
if not epoch then
  epoch = unborn(meta, ARGV[6], tonumber(ARGV[3])) or ARGV[4]
  redis.call('HSET', meta, 'e', epoch)
  adopt(meta)
end
local n = (#ARGV - 8) / 2
local top = tonumber(redis.call('HGET', meta, 's') or '0')
local first = top + 1
local origin = ARGV[5]
local tail = {tail}
local tokens, now, outcome = nil, 0, nil
if ARGV[7] ~= '' then
  tokens, outcome = cjson.decode(ARGV[7]), {{}}
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
for i = 1, n do
  local token = tokens and tokens[i] or ''
  local prior = token ~= '' and redis.call('HGET', ids, token)
  if prior then
    outcome[i] = -tonumber(prior)
  else
    top = top + 1
    local frame, sig = ARGV[8 + i], ARGV[8 + n + i]
    redis.call('XADD', stream, 'MAXLEN', ARGV[2], top .. '-0', 'd', frame, 'g', sig)
    redis.call('{publish}', ARGV[1], {head} .. top .. tail .. frame .. {end})
    if token ~= '' then
      redis.call('HSET', ids, token, top)
      redis.call('ZADD', idq, now, token)
    end
    if outcome then outcome[i] = top end
  end
end
redis.call('HSET', meta, 's', top)
redis.call('EXPIRE', meta, ARGV[3])
redis.call('EXPIRE', stream, ARGV[3])
if not tokens then return {{first, epoch}} end
local keep, budget = top - tonumber(ARGV[2]), 2 * n
while budget > 0 do
  local oldest = redis.call('ZRANGE', idq, 0, 0, 'WITHSCORES')
  if #oldest == 0 or tonumber(oldest[2]) > now - tonumber(ARGV[8]) then break end
  if tonumber(redis.call('HGET', ids, oldest[1]) or '0') > keep then break end
  redis.call('ZREM', idq, oldest[1])
  redis.call('HDEL', ids, oldest[1])
  budget = budget - 1
end
redis.call('EXPIRE', ids, ARGV[3])
redis.call('EXPIRE', idq, ARGV[3])
return {{first, epoch, outcome}}
"""

_READ = _UNBORN + """
local meta, stream = KEYS[1], KEYS[2]
local epoch = continued(meta, ARGV[1])
if not epoch then
  epoch = unborn(meta, ARGV[5], tonumber(ARGV[2]))
  if epoch then return {0, epoch, 1, {}, 0} end  -- no history: nothing is written
  epoch = ARGV[1]  -- this server cannot name its lifetime: the old rule
  redis.call('HSET', meta, 'e', epoch)
  adopt(meta)
end
redis.call('EXPIRE', meta, ARGV[2])  -- a read keeps an existing history's position
local top = tonumber(redis.call('HGET', meta, 's') or '0')
local mode, n = ARGV[3], tonumber(ARGV[4])
local entries = {}
if mode == 'after' then
  entries = redis.call('XRANGE', stream, (n + 1) .. '-0', '+')
elseif mode == 'last' and n > 0 then
  entries = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', n)
end
local first = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)
local oldest = top + 1
if #first > 0 then oldest = tonumber(string.match(first[1][1], '^(%d+)')) end
return {top, epoch, oldest, entries, tonumber(redis.call('HGET', meta, 'b') or '0')}
"""

# Presence: KEY:presence is a sorted set of JSON [user, instance] members scored by
# their expiry in Redis's own clock (TIME), so instances' clocks never matter.
# KEY:presence:idx holds the same members, all at score 0, so that one user's
# entries are a lexicographic range (every member starts with the JSON of
# [user, ): "is this user still here?" costs O(log n + the user's instances), not a
# scan of the room. (A scan made each join O(room size): 5,000 joins to one room
# never finished.) Both keys share the room's hash tag.
_PRESENCE_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local function prefix(user)
  local whole = cjson.encode({user, ''})
  return string.sub(whole, 1, #whole - 3)  -- drop the '""]' of the empty instance
end
local function present(key, idx, user)
  local p = prefix(user)
  for _, m in ipairs(redis.call('ZRANGEBYLEX', idx, '[' .. p, '(' .. p .. '\\255')) do
    local expires = redis.call('ZSCORE', key, m)
    if expires and tonumber(expires) > now then return true end
    if not expires then redis.call('ZREM', idx, m) end
  end
  return false
end
"""

_PRESENCE_JOIN = _PRESENCE_NOW + """
local key, idx, user, ttl = KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[3])
local first = not present(key, idx, user)
local member = cjson.encode({user, ARGV[2]})
redis.call('ZADD', key, now + ttl, member)
redis.call('ZADD', idx, 0, member)
redis.call('EXPIRE', key, math.ceil(ttl) + 1)
redis.call('EXPIRE', idx, math.ceil(ttl) + 1)
if first then return 1 end
return 0
"""

_PRESENCE_LEAVE = _PRESENCE_NOW + """
local key, idx, user = KEYS[1], KEYS[2], ARGV[1]
local member = cjson.encode({user, ARGV[2]})
redis.call('ZREM', key, member)
redis.call('ZREM', idx, member)
if present(key, idx, user) then return 0 end
return 1
"""

_PRESENCE_REFRESH = _PRESENCE_NOW + """
local key, idx, instance, ttl = KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2])
local expired = redis.call('ZRANGEBYSCORE', key, '-inf', now)
redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
for _, m in ipairs(expired) do redis.call('ZREM', idx, m) end
for i = 3, #ARGV do
  local member = cjson.encode({ARGV[i], instance})
  redis.call('ZADD', key, now + ttl, member)
  redis.call('ZADD', idx, 0, member)
end
if #ARGV >= 3 then
  redis.call('EXPIRE', key, math.ceil(ttl) + 1)
  redis.call('EXPIRE', idx, math.ceil(ttl) + 1)
end
local gone, seen = {}, {}
for _, m in ipairs(expired) do
  local user = cjson.decode(m)[1]
  if not seen[user] and not present(key, idx, user) then
    gone[#gone + 1] = user
  end
  seen[user] = true
end
return gone
"""

_PRESENCE_LIST = _PRESENCE_NOW + """
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
"""

_SOURCES = {"append": _APPEND, "read": _READ, "presence_join": _PRESENCE_JOIN,
            "presence_leave": _PRESENCE_LEAVE, "presence_refresh": _PRESENCE_REFRESH,
            "presence_list": _PRESENCE_LIST}


def sources(publish: str = "PUBLISH") -> dict[str, str]:
    """Every script's Lua source, the append script publishing with ``publish``
    (``SPUBLISH`` on a Redis Cluster) and building envelopes from
    :mod:`wskit.core.envelope`'s fragments."""
    if publish not in ("PUBLISH", "SPUBLISH"):
        raise ValueError(f"not a publish command: {publish!r}")
    out = dict(_SOURCES)
    out["append"] = _APPEND.format(publish=publish, head=LUA_HEAD, tail=LUA_TAIL,
                                   end=LUA_END)
    return out


#: at most this many posts per append script call: Redis runs nothing else while
#: a script runs, so a huge burst is stored in several calls
MAX_RUN = 64


def runs(posts: Sequence[RoomPost]) -> list[list[RoomPost]]:
    """``posts`` in order, cut into what one command sends: consecutive appends to
    one history (same key, channel, origin, retention; at most :data:`MAX_RUN`) go
    in one script call; a publication goes alone."""
    out: list[list[RoomPost]] = []
    for post in posts:
        last = out[-1] if out else None
        if (last is not None and post.key is not None and len(last) < MAX_RUN
                and post.key == last[0].key and post.channel == last[0].channel
                and post.origin == last[0].origin and post.retention == last[0].retention):
            last.append(post)
        else:
            out.append([post])
    return out


def append_keys(key: str) -> list[str]:
    """The append script's KEYS for history ``key`` (one hash tag: one slot)."""
    return [f"{key}:meta", f"{key}:stream", f"{key}:ids", f"{key}:idq"]


def append_args(run: Sequence[RoomPost], lifetime: str = "") -> list[Any]:
    """The append script's ARGV for a run (see :func:`runs`); ``lifetime`` names the
    server's lifetime where Redis cannot (an in-process fakeredis), else ''."""
    first = run[0]
    assert first.retention is not None
    tokens = json.dumps([post.once or "" for post in run]) if any(
        post.once for post in run) else ""
    return [first.channel, first.retention.size, max(1, int(first.retention.ttl)),
            new_epoch(), json.dumps(first.origin), lifetime, tokens, ID_WINDOW,
            *(post.frame_text for post in run), *(post.sig for post in run)]


def sent_of(run: Sequence[RoomPost], reply: Any, where: str) -> list[Sent]:
    """What one command's reply says of its run: ``(offset, epoch)`` per post for an
    append (the script returns the first offset), None for a publication, or the
    error, for every post of the run."""
    if isinstance(reply, Exception):
        return [BackplaneUnavailable(f"send to {where} failed: {reply}")] * len(run)
    if run[0].key is None:
        return [None]
    first, epoch = int(reply[0]), str(reply[1])
    if len(reply) < 3:
        return [(first + i, epoch) for i in range(len(run))]
    return [(int(o), epoch) if int(o) > 0 else Repeat(-int(o), epoch) for o in reply[2]]
