-- cai.jsonl: one JSON value per line. read names the file and line of a
-- malformed record; write is all-or-nothing (temp file + rename); append
-- adds one complete line per call (for resumable generation stages).
local c = require "cai._json"

return {
  ---@param path string
  read = c.jsonl_read,
  ---@param path string
  ---@param records table list of records
  write = c.jsonl_write,
  ---@param path string
  ---@param record any
  append = c.jsonl_append,
}
