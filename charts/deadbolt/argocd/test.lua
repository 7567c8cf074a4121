-- Tests of the Argo CD health check in this directory, health.lua, run with
-- Debian's lua5.4 (and lua5.1, the dialect of Argo CD's gopher-lua, when
-- installed):
--   lua5.4 charts/deadbolt/argocd/test.lua
-- Each case is the kind, an object as `kubectl get -o json` prints it, read
-- with the small JSON reader below, and the status and message Argo CD would
-- show. Argo CD runs the same health.lua for every kind, so each case loads it
-- afresh, as Argo CD does for each object.

local dir = (arg and arg[0] and arg[0]:match("^(.*)/[^/]*$")) or "."

-- A JSON reader: objects, arrays, strings (with escapes), numbers, booleans, null.
local function decode(text)
  local pos = 1
  local function fail(what)
    error(string.format("JSON: %s at offset %d", what, pos), 0)
  end
  local function space()
    pos = text:find("[^ \t\r\n]", pos) or #text + 1
  end
  local value
  local function str()
    local out = {}
    pos = pos + 1
    while true do
      local c = text:sub(pos, pos)
      if c == "" then fail("unterminated string") end
      if c == '"' then pos = pos + 1; break end
      if c == "\\" then
        local e = text:sub(pos + 1, pos + 1)
        local map = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }
        if map[e] then
          table.insert(out, map[e]); pos = pos + 2
        elseif e == "u" then
          local code = tonumber(text:sub(pos + 2, pos + 5), 16)
          if not code or code > 127 then fail("only ASCII \\u escapes are supported") end
          table.insert(out, string.char(code)); pos = pos + 6
        else
          fail("bad escape")
        end
      else
        table.insert(out, c); pos = pos + 1
      end
    end
    return table.concat(out)
  end
  function value()
    space()
    local c = text:sub(pos, pos)
    if c == "{" then
      local t = {}
      pos = pos + 1; space()
      if text:sub(pos, pos) == "}" then pos = pos + 1; return t end
      while true do
        space()
        if text:sub(pos, pos) ~= '"' then fail("expected a key") end
        local k = str(); space()
        if text:sub(pos, pos) ~= ":" then fail("expected ':'") end
        pos = pos + 1
        t[k] = value(); space()
        local d = text:sub(pos, pos); pos = pos + 1
        if d == "}" then return t end
        if d ~= "," then fail("expected ',' or '}'") end
      end
    elseif c == "[" then
      local t = {}
      pos = pos + 1; space()
      if text:sub(pos, pos) == "]" then pos = pos + 1; return t end
      while true do
        table.insert(t, value()); space()
        local d = text:sub(pos, pos); pos = pos + 1
        if d == "]" then return t end
        if d ~= "," then fail("expected ',' or ']'") end
      end
    elseif c == '"' then
      return str()
    elseif text:sub(pos, pos + 3) == "true" then pos = pos + 4; return true
    elseif text:sub(pos, pos + 4) == "false" then pos = pos + 5; return false
    elseif text:sub(pos, pos + 3) == "null" then pos = pos + 4; return nil
    else
      local n = text:match("^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
      if not n or n == "" then fail("unexpected character '" .. c .. "'") end
      pos = pos + #n
      return tonumber(n)
    end
  end
  local v = value(); space()
  if pos <= #text then fail("trailing text") end
  return v
end

-- Runs health.lua the way Argo CD does: a global `obj`, a returned table.
local script = "health.lua"
local function health(object)
  local env = setmetatable({ obj = object }, { __index = _G })
  local chunk, err
  if setfenv then -- Lua 5.1
    chunk, err = loadfile(dir .. "/" .. script)
    if chunk then setfenv(chunk, env) end
  else
    chunk, err = loadfile(dir .. "/" .. script, "t", env)
  end
  if not chunk then error(err, 0) end
  return chunk()
end

local cases = {
  -- Locks
  { "Lock", "Lock just created", "Progressing", "Waiting for the Deadbolt operator to report status",
    [[{"apiVersion":"deadbolt.dev/v1","kind":"Lock","metadata":{"name":"l","generation":1},
       "spec":{"target":{"user":"alice"}}}]] },
  { "Lock", "Lock edited, not yet observed", "Progressing",
    "Waiting for the Deadbolt operator to observe the latest change",
    [[{"kind":"Lock","metadata":{"name":"l","generation":2},"status":{"observedGeneration":1,
       "conditions":[{"type":"Ready","status":"True","reason":"Accepted","message":"targets User:\"alice\""}]}}]] },
  { "Lock", "Lock status without observedGeneration", "Progressing",
    "Waiting for the Deadbolt operator to observe the latest change",
    [[{"kind":"Lock","metadata":{"name":"l","generation":1},"status":{"conditions":[{"type":"Ready","status":"True"}]}}]] },
  { "Lock", "Lock in force with an expiry", "Healthy",
    "Lock is in force until 2030-08-14T22:27:00Z; enforced by 3/3 connected proxies",
    [[{"kind":"Lock","metadata":{"name":"l","generation":1},"status":{"observedGeneration":1,
       "conditions":[{"type":"Ready","status":"True","reason":"Accepted","message":"targets Role:\"contractor\""},
                     {"type":"InForce","status":"True","reason":"InForce","message":"in force until 2030-08-14T22:27:00Z"},
                     {"type":"Reconciling","status":"False","reason":"Reconciled","message":""},
                     {"type":"Stalled","status":"False","reason":"Reconciled","message":""}],
       "expiresAt":"2030-08-14T22:27:00Z","enforcedBy":"3/3"}}]] },
  { "Lock", "Lock in force until deleted", "Healthy", "Lock is in force; enforced by 0/0 connected proxies",
    [[{"kind":"Lock","metadata":{"name":"l","generation":3},"status":{"observedGeneration":3,
       "conditions":[{"type":"Ready","status":"True"},{"type":"InForce","status":"True"}],"enforcedBy":"0/0"}}]] },
  { "Lock", "Lock whose expiry passed", "Healthy",
    "Lock is no longer in force: expired at 2024-01-01T10:00:00Z",
    [[{"kind":"Lock","metadata":{"name":"l","generation":1},"status":{"observedGeneration":1,
       "conditions":[{"type":"Ready","status":"True","reason":"Accepted","message":"targets User:\"bob\""},
                     {"type":"InForce","status":"False","reason":"Expired","message":"expired at 2024-01-01T10:00:00Z"}],
       "expiresAt":"2024-01-01T10:00:00Z","enforcedBy":"2/2"}}]] },
  { "Lock", "invalid Lock (Stalled)", "Degraded", "Invalid: ttl must be a positive duration such as 10h or 90m",
    [[{"kind":"Lock","metadata":{"name":"l","generation":1},"status":{"observedGeneration":1,
       "conditions":[{"type":"Ready","status":"False","reason":"Invalid","message":"ttl must be a positive duration such as 10h or 90m"},
                     {"type":"InForce","status":"False","reason":"Invalid","message":"the lock cannot be used"},
                     {"type":"Stalled","status":"True","reason":"Invalid","message":"ttl must be a positive duration such as 10h or 90m"},
                     {"type":"Reconciling","status":"False","reason":"Invalid","message":""}]}}]] },
  { "Lock", "Lock not Ready, no kstatus conditions", "Degraded", "Invalid: the target has no field set",
    [[{"kind":"Lock","metadata":{"name":"l","generation":1},"status":{"observedGeneration":1,
       "conditions":[{"type":"Ready","status":"False","reason":"Invalid","message":"the target has no field set"}]}}]] },
  { "Lock", "Lock being reconciled", "Progressing", "Applying: waiting for the leader",
    [[{"kind":"Lock","metadata":{"name":"l","generation":1},"status":{"observedGeneration":1,
       "conditions":[{"type":"Reconciling","status":"True","reason":"Applying","message":"waiting for the leader"},
                     {"type":"Ready","status":"True"}]}}]] },
  { "Lock", "stale Stalled after an edit", "Progressing",
    "Waiting for the Deadbolt operator to observe the latest change",
    [[{"kind":"Lock","metadata":{"name":"l","generation":2},"status":{"observedGeneration":1,
       "conditions":[{"type":"Stalled","status":"True","reason":"Invalid","message":"bad ttl"},
                     {"type":"Ready","status":"False","reason":"Invalid","message":"bad ttl"}]}}]] },
  { "Lock", "Ready Unknown", "Progressing", "Pending: starting",
    [[{"kind":"Lock","metadata":{"name":"l","generation":1},"status":{"observedGeneration":1,
       "conditions":[{"type":"Ready","status":"Unknown","reason":"Pending","message":"starting"}]}}]] },
  -- Users
  { "User", "User not yet reconciled", "Progressing", "Waiting for the Deadbolt operator to report status",
    [[{"kind":"User","metadata":{"name":"alice","generation":1},"spec":{"roles":["dev"]}}]] },
  { "User", "User ready", "Healthy", "User is ready and not locked",
    [[{"kind":"User","metadata":{"name":"alice","generation":1},"status":{"observedGeneration":1,"locked":false,
       "conditions":[{"type":"Ready","status":"True","reason":"Accepted","message":""}]}}]] },
  { "User", "User locked", "Healthy", "User is locked by Lock deadbolt-suspended-alice",
    [[{"kind":"User","metadata":{"name":"alice","generation":4},"status":{"observedGeneration":4,"locked":true,
       "lockedBy":"deadbolt-suspended-alice","conditions":[{"type":"Ready","status":"True"}]}}]] },
  { "User", "User stalled", "Degraded", "Invalid: temporary users live at most 30h",
    [[{"kind":"User","metadata":{"name":"tmp","generation":1},"status":{"observedGeneration":1,
       "conditions":[{"type":"Ready","status":"False","reason":"Invalid","message":"temporary users live at most 30h"},
                     {"type":"Stalled","status":"True","reason":"Invalid","message":"temporary users live at most 30h"}]}}]] },
  -- ClusterAuthPreference
  { "ClusterAuthPreference", "ClusterAuthPreference in effect", "Healthy",
    "In effect: lockingMode strict, maxLockStaleness 15s, requireSessionMfa false",
    [[{"kind":"ClusterAuthPreference","metadata":{"name":"cluster-auth-preference","generation":2},
       "status":{"observedGeneration":2,"lockingMode":"strict","maxLockStaleness":"15s","requireSessionMfa":"false",
       "conditions":[{"type":"Ready","status":"True","reason":"Accepted","message":""}]}}]] },
  { "ClusterAuthPreference", "ClusterAuthPreference edited", "Progressing",
    "Waiting for the Deadbolt operator to observe the latest change",
    [[{"kind":"ClusterAuthPreference","metadata":{"name":"cluster-auth-preference","generation":3},
       "status":{"observedGeneration":2,"lockingMode":"strict","conditions":[{"type":"Ready","status":"True"}]}}]] },
  { "ClusterAuthPreference", "ClusterAuthPreference rejected", "Degraded", "Invalid: webauthn.rpId is required",
    [[{"kind":"ClusterAuthPreference","metadata":{"name":"cluster-auth-preference","generation":1},
       "status":{"observedGeneration":1,"conditions":[{"type":"Ready","status":"False","reason":"Invalid",
       "message":"webauthn.rpId is required"}]}}]] },
  -- A kind without a message of its own (health.lua put under another key by hand)
  { "Widget", "unknown kind, Ready", "Healthy", "Ready",
    [[{"kind":"Widget","metadata":{"name":"w","generation":1},"status":{"observedGeneration":1,
       "conditions":[{"type":"Ready","status":"True","reason":"Accepted","message":"fine"}]}}]] },
}

local failed = 0
for _, case in ipairs(cases) do
  local kind, name, status, message, json = case[1], case[2], case[3], case[4], case[5]
  local ok, result = pcall(function()
    local object = decode(json)
    if object.kind ~= kind then
      error(string.format("the sample object's kind is %s", tostring(object.kind)), 0)
    end
    return health(object)
  end)
  if not ok then
    failed = failed + 1
    print(string.format("FAIL %-21s %-38s error: %s", kind, name, tostring(result)))
  elseif result.status ~= status or result.message ~= message then
    failed = failed + 1
    print(string.format("FAIL %-21s %-38s got %s %q, want %s %q", kind, name,
      tostring(result.status), tostring(result.message), status, message))
  else
    print(string.format("ok   %-21s %-38s %-11s %s", kind, name, status, message))
  end
end
print(string.format("%s: %s, %d cases, %d failed", _VERSION, script, #cases, failed))
if failed > 0 then
  os.exit(1)
end
