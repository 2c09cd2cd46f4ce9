-- cai.json: encode/decode with sorted object keys (same data, same bytes).
-- Empty tables encode as [] unless marked with cai.json.object(t);
-- JSON null decodes to cai.json.null.
local c = require "cai._json"
local core = require "cai._core"

return {
  ---@param value any
  ---@param opts table|nil { indent = n }
  encode = c.encode,
  ---@param text string
  decode = c.decode,
  ---The keys of a decoded JSON object in the order of its text (nil when
  ---not decoded or fewer than two keys); chat templates print dicts in it.
  ---@param t table
  key_order = c.key_order,
  array = c.array,
  object = c.object,
  null = c.null,
  ---Writes value as JSON (indent 2 unless opts.indent says otherwise) and a
  ---newline to path, all-or-nothing.
  ---@param path string
  ---@param value any
  ---@param opts table|nil { indent = 2 }
  write = function(path, value, opts)
    local check = require "cai.check"
    check.value("cai.json.write", "path", path, { type = "string", nonempty = true })
    opts = check("cai.json.write", opts, { indent = { type = "integer", min = 0 } })
    core.write_file(path, c.encode(value, { indent = opts.indent or 2 }) .. "\n")
  end,
}
