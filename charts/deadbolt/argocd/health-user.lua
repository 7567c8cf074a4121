-- Argo CD health check for deadbolt.dev/v1 User
-- (argocd-cm: resource.customizations.health.deadbolt.dev_User).
-- Argo CD runs each check on its own, so the helpers are repeated in each of
-- the three files; test.lua runs them all over the same sample objects.
-- Same rules as for Locks; a locked user is still Healthy (the lock is the
-- point), and the message says which lock holds it.
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
if status.locked == true then
  if status.lockedBy ~= nil and status.lockedBy ~= "" then
    hs.message = "User is locked by Lock " .. status.lockedBy
  else
    hs.message = "User is locked"
  end
else
  hs.message = "User is ready and not locked"
end
return hs
