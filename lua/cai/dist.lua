--- cai.dist: this process's place in a data-parallel job.
---
--- `cairun --nproc N recipe.lua` (or torchrun, or a cluster launcher setting
--- RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) runs the recipe once per rank.
--- Training, m:generate and m:logprobs share their work among the ranks by
--- themselves and give every rank the same results; a recipe only decides
--- which rank writes its own files:
---
---   if cai.dist.is_main() then cai.jsonl.write(out .. "/samples.jsonl", samples) end
---   cai.dist.barrier()   -- the others wait until it is there
---
--- In a single process rank() is 0, world_size() 1 and barrier() returns at once.
local d = require "cai._dist"
local check = require "cai.check"

local M = {}

---0-based rank of this process (0 in a single process).
---@return integer
M.rank = d.rank

---Number of ranks in the job (1 in a single process).
---@return integer
M.world_size = d.world_size

---Rank on this machine (LOCAL_RANK).
---@return integer
M.local_rank = d.local_rank

---true on rank 0, the rank that writes metrics, checkpoints and outputs.
---@return boolean
M.is_main = d.is_main

---Every rank waits here until all ranks arrive (an error, not a hang, when one has died).
---@param what string|nil named in errors
function M.barrier(what)
  check.value("cai.dist.barrier", "what", what, { type = "string", optional = true })
  return d.barrier(what)
end

---Every rank's string, in rank order (collective: all ranks must call it).
---@param s string
---@return table
function M.all_gather(s)
  check.value("cai.dist.all_gather", "s", s, "string")
  return d.all_gather(s)
end

---Runs fn(...) as a single process (rank 0 of 1): training, generation and
---barriers inside do not involve the other ranks, and it writes its outputs.
---For work one rank does while the others wait, e.g. building a cache:
---  if cai.dist.is_main() then cai.dist.alone(build) end; cai.dist.barrier("the cache")
---@param fn function
function M.alone(fn, ...)
  check.value("cai.dist.alone", "fn", fn, "function")
  return d.alone(fn, ...)
end

---This rank's contiguous share of a list: the items in rank order make up the list.
---@param list table
---@return table
function M.shard(list)
  check.value("cai.dist.shard", "list", list, "table")
  local first, last = d.shard(#list)
  local out = {}
  for i = first, last do out[#out + 1] = list[i] end
  return out
end

return M
