-- Argo CD health check for deadbolt.dev/v1 Lock
-- (argocd-cm: resource.customizations.health.deadbolt.dev_Lock).
-- Argo CD runs each check on its own, so the helpers are repeated in each of
-- the three files; test.lua runs them all over the same sample objects.
-- Progressing until the operator has observed the current generation and is
-- not reconciling; Degraded when it is Stalled or not Ready (an invalid lock);
-- Healthy when Ready. An expired lock is still Healthy: it did its job.
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
local inForce = condition(conditions, "InForce")
if inForce ~= nil and inForce.status == "False" then
  -- Expired: no longer enforced, and that is the lock working as written.
  local why = inForce.message
  if why == nil or why == "" then
    why = "expired"
  end
  hs.message = "Lock is no longer in force: " .. why
  return hs
end
local text = "Lock is in force"
if status.expiresAt ~= nil and status.expiresAt ~= "" then
  text = text .. " until " .. status.expiresAt
end
if status.enforcedBy ~= nil and status.enforcedBy ~= "" then
  text = text .. "; enforced by " .. status.enforcedBy .. " connected proxies"
end
hs.message = text
return hs
