-- cai.log.info(...), .warn, .error, .debug: levelled messages on stderr.
-- Arguments are joined with spaces (tostring each). cai.log.level("debug").
local core = require "cai._core"

local function join(...)
  local parts = {}
  for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
  return table.concat(parts, " ")
end

local log = {}
for _, level in ipairs { "debug", "info", "warn", "error" } do
  log[level] = function(...) core.log(level, join(...)) end
end

---Gets, or sets and returns, the current level.
---@param name string|nil
function log.level(name) return core.log_level(name) end

return log
