-- Strict globals for recipes: reading a global that was never declared, or
-- creating a new global by assignment, is an error that names it. Globals
-- that exist when strict mode starts (the standard library, cai) stay usable;
-- a recipe that really wants a new global declares it with cai.global(name, value).
local M = {}

local declared = {}

local function enable()
  local G = _G
  for name in pairs(G) do declared[name] = true end
  setmetatable(G, {
    __newindex = function(t, name, value)
      if not declared[name] then
        error(string.format("assignment to undeclared global '%s' (use 'local %s', or cai.global(%q, value) to declare it)",
          tostring(name), tostring(name), tostring(name)), 2)
      end
      rawset(t, name, value)
    end,
    __index = function(_, name)
      if not declared[name] then
        error(string.format("undeclared global '%s' (a typo, or a missing 'local'?)", tostring(name)), 2)
      end
      return nil
    end,
  })
end

---Declares a global so strict mode allows it.
---@param name string
function M.declare(name, value)
  if type(name) ~= "string" then error("cai.global: name must be a string", 3) end
  declared[name] = true
  rawset(_G, name, value)
end

M.enable = enable
return M
