-- Argo CD health check for deadbolt.dev/v1 ClusterAuthPreference
-- (argocd-cm: resource.customizations.health.deadbolt.dev_ClusterAuthPreference).
-- Argo CD runs each check on its own, so the helpers are repeated in each of
-- the three files; test.lua runs them all over the same sample objects.
-- Same rules as for Locks; the message shows the settings in effect.
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
  hs.message = "In effect: " .. table.concat(parts, ", ")
else
  hs.message = "Ready"
end
return hs
