-- cai.json: encode/decode with sorted object keys (same data, same bytes).
-- Empty tables encode as [] unless marked with cai.json.object(t);
-- JSON null decodes to cai.json.null.
local c = require "cai._json"

return {
  ---@param value any
  ---@param opts table|nil { indent = n }
  encode = c.encode,
  ---@param text string
  decode = c.decode,
  array = c.array,
  object = c.object,
  null = c.null,
}
