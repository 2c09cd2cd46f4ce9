-- cai.jsonl: one JSON value per line. read names the file and line of a
-- malformed record; write is all-or-nothing (temp file + rename); append
-- adds one complete line per call (for resumable generation stages);
-- instructions reads an instruction file (strings or { instruction = ... }).
local c = require "cai._json"

-- The first n instruction texts of path (all when n is nil): each line a
-- string or a record with a non-empty `instruction` string; anything else
-- is an error naming the file and line.
---@param path string
---@param n integer|nil
local function instructions(path, n)
  local check = require "cai.check"
  check.value("cai.jsonl.instructions", "path", path, "string")
  check.value("cai.jsonl.instructions", "n", n, { type = "integer", min = 0, optional = true })
  local out = {}
  if n == 0 then return out end
  for i, r in ipairs(c.jsonl_read(path)) do
    local text = type(r) == "string" and r or (type(r) == "table" and r.instruction)
    if type(text) ~= "string" or text == "" then
      error(string.format("%s:%d: expected a string or { instruction = string }", path, i), 0)
    end
    out[#out + 1] = text
    if #out == n then break end
  end
  return out
end

return {
  instructions = instructions,
  ---@param path string
  read = c.jsonl_read,
  ---@param path string
  ---@param records table list of records
  write = c.jsonl_write,
  ---@param path string
  ---@param record any
  append = c.jsonl_append,
}
