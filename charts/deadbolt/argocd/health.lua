-- Argo CD health check for the deadbolt.dev/v1 kinds Lock, User and
-- ClusterAuthPreference. Argo CD has no health rules for custom resources of
-- its own; without this script it cannot tell a Lock the operator rejected
-- (Degraded) from one it has not seen yet (Progressing).
-- Argo CD reads a check from argocd-cm, one key per kind:
--   resource.customizations.health.deadbolt.dev_Lock
--   resource.customizations.health.deadbolt.dev_User
--   resource.customizations.health.deadbolt.dev_ClusterAuthPreference
-- and runs it on its own (no require), with the object as the global `obj`,
-- showing the status and message of the table it returns. The rules are the
-- same for every kind, so this one script goes under all three keys, byte for
-- byte (examples/gitops/argocd/argocd-cm-health.yaml; scripts/test-chart.sh
-- checks they match), and picks only the message when healthy by obj.kind.
-- test.lua runs it over sample objects of each kind.
--
-- Progressing until the operator has observed the current generation and is
-- not reconciling; Degraded when it is Stalled or not Ready (an invalid lock);
-- Healthy when Ready. An expired Lock is still Healthy: it did its job. A
-- locked User is still Healthy (the lock is the point), and the message says
-- which lock holds it. A ClusterAuthPreference shows the settings in effect.
local hs = { status = "Progressing", message = "Waiting for the Deadbolt operator to report status" }

local function condition(conditions, type_)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == type_ then
      return c
    end
  end
  return nil
end

local function explain(c, fallback)
  if c == nil then
    return fallback
  end
  local text = c.message
  if text == nil or text == "" then
    text = fallback
  end
  if c.reason ~= nil and c.reason ~= "" then
    return c.reason .. ": " .. text
  end
  return text
end

-- The message when Ready, by kind.
local healthy = {}

function healthy.Lock(status, conditions)
  local inForce = condition(conditions, "InForce")
  if inForce ~= nil and inForce.status == "False" then
    -- Expired: no longer enforced, and that is the lock working as written.
    local why = inForce.message
    if why == nil or why == "" then
      why = "expired"
    end
    return "Lock is no longer in force: " .. why
  end
  local text = "Lock is in force"
  if status.expiresAt ~= nil and status.expiresAt ~= "" then
    text = text .. " until " .. status.expiresAt
  end
  if status.enforcedBy ~= nil and status.enforcedBy ~= "" then
    text = text .. "; enforced by " .. status.enforcedBy .. " connected proxies"
  end
  return text
end

function healthy.User(status, conditions)
  if status.locked == true then
    if status.lockedBy ~= nil and status.lockedBy ~= "" then
      return "User is locked by Lock " .. status.lockedBy
    end
    return "User is locked"
  end
  return "User is ready and not locked"
end

function healthy.ClusterAuthPreference(status, conditions)
  local parts = {}
  if status.lockingMode ~= nil then
    table.insert(parts, "lockingMode " .. status.lockingMode)
  end
  if status.maxLockStaleness ~= nil then
    table.insert(parts, "maxLockStaleness " .. status.maxLockStaleness)
  end
  if status.requireSessionMfa ~= nil then
    table.insert(parts, "requireSessionMfa " .. tostring(status.requireSessionMfa))
  end
  if #parts > 0 then
    return "In effect: " .. table.concat(parts, ", ")
  end
  return "Ready"
end

local status = obj.status
if status == nil or status.conditions == nil then
  return hs
end
local generation = obj.metadata and obj.metadata.generation
if status.observedGeneration == nil or (generation ~= nil and status.observedGeneration < generation) then
  hs.message = "Waiting for the Deadbolt operator to observe the latest change"
  return hs
end
local conditions = status.conditions
local reconciling = condition(conditions, "Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  hs.message = explain(reconciling, "Reconciling")
  return hs
end
local stalled = condition(conditions, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = explain(stalled, "Stalled")
  return hs
end
local ready = condition(conditions, "Ready")
if ready == nil or ready.status == "Unknown" then
  hs.message = explain(ready, "Waiting for the Ready condition")
  return hs
end
if ready.status == "False" then
  hs.status = "Degraded"
  hs.message = explain(ready, "Not ready")
  return hs
end

hs.status = "Healthy"
local message = healthy[obj.kind]
if message ~= nil then
  hs.message = message(status, conditions)
else
  -- A kind this script does not know (a key added by hand): the rules above
  -- still hold; it just has no kind-specific message.
  hs.message = "Ready"
end
return hs
