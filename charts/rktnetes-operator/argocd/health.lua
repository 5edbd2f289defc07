-- Argo CD health check for rktnetes.io/RktNodeConfig. Argo CD runs it with the live object as the global `obj`
-- (gopher-lua, Lua 5.1, with only the base, table and a reduced os library: no string or math library) and reads
-- `status` and `message` from the table it returns. Installed through argocd-cm as
-- resource.customizations.health.rktnetes.io_RktNodeConfig: argocd-cm-patch.yaml, next to this file, embeds this
-- very text, and tests/integration/argocd_health.rs keeps the two equal.
local hs = {}

local function condition(status, wanted)
  if status == nil or status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == wanted then
      return c
    end
  end
  return nil
end

local function is_true(c)
  return c ~= nil and c.status == "True"
end

local function message_of(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  return fallback
end

local status = obj.status
local generation = nil
if obj.metadata ~= nil then
  generation = tonumber(obj.metadata.generation)
end
local observed = nil
if status ~= nil then
  observed = tonumber(status.observedGeneration)
end

-- Until the controller has written a status for the current spec, every condition may describe an older one.
if status == nil or (generation ~= nil and (observed == nil or observed < generation)) then
  hs.status = "Progressing"
  if generation ~= nil then
    hs.message = "waiting for the controller to observe generation " .. tostring(generation)
  else
    hs.message = "waiting for the controller to report a status"
  end
  return hs
end

local conflict = condition(status, "Conflict")
if is_true(conflict) then
  hs.status = "Degraded"
  hs.message = message_of(conflict, "another RktNodeConfig selects the same nodes at the same priority")
  return hs
end

local degraded = condition(status, "Degraded")
if is_true(degraded) then
  hs.status = "Degraded"
  hs.message = message_of(degraded, "nodes failed to apply this config")
  return hs
end

local progressing = condition(status, "Progressing")
local paused = obj.spec ~= nil and obj.spec.rollout ~= nil and obj.spec.rollout.paused == true
local matched = tonumber(status.matchedNodes) or 0
local updated = tonumber(status.updatedNodes) or 0
if paused and updated < matched then
  hs.status = "Suspended"
  hs.message = "spec.rollout.paused is set: " .. tostring(updated) .. " of " .. tostring(matched) .. " nodes updated"
  if progressing ~= nil and progressing.reason == "Paused" then
    hs.message = message_of(progressing, hs.message)
  end
  return hs
end

if is_true(progressing) then
  hs.status = "Progressing"
  hs.message = message_of(progressing, "rolling out")
  return hs
end

local ready = condition(status, "Ready")
if is_true(ready) then
  hs.status = "Healthy"
  hs.message = message_of(ready, "all selected nodes run this config")
  return hs
end

hs.status = "Progressing"
hs.message = message_of(ready, message_of(progressing, "waiting for the nodes to apply this config"))
return hs
