-- analyze_pairs.lua: the pair report of the Stage 3 post-mortem for any
-- pairs file: how many pairs are identical, the score deltas and how often
-- the revision won, meta-commentary, principle usage, the worst revisions,
-- and what the quality filters would drop.
--
--   build/cairun recipes/analyze_pairs.lua pairs=runs/critique_revision/records.jsonl
--   build/cairun recipes/analyze_pairs.lua pairs=runs/quickstart/pairs.jsonl min_score_delta=0
--
-- Reads critique records ({ instruction, initial_answer, revised_answer,
-- base_score, revised_score }), base/revised pairs or TRL pairs
-- ({ prompt, chosen, rejected[, chosen_score, rejected_score] }).
-- Writes <pairs>.report.json beside the input unless out= names a file.
local cai = require "cai"

local args = cai.args{
  pairs = "",                   -- the JSONL to analyse (required)
  out = "",                     -- report JSON path; "" = <pairs without .jsonl>.report.json
  threshold = 0.1,              -- a score delta beyond +-threshold counts as a win
  worst_threshold = 0.5,        -- revisions worse than this are listed
  examples = 3,
  min_score_delta = 0.1,        -- the filters' setting to preview (0 = no delta filter)
}
if args.pairs == "" then error("analyze_pairs.lua: pairs= is required (a JSONL of pairs or critique records)", 0) end
local records = cai.jsonl.read(args.pairs)
if #records == 0 then error("analyze_pairs.lua: " .. args.pairs .. " holds no records", 0) end

local ok, report = pcall(cai.analysis.pairs, records, { threshold = args.threshold,
  worst_threshold = args.worst_threshold, examples = args.examples })
if not ok then error("analyze_pairs.lua: " .. args.pairs .. ": " .. tostring(report), 0) end
local _, filter_stats = cai.filters.apply(records, { min_score_delta = args.min_score_delta > 0 and args.min_score_delta
  or false, quiet = true })
report.filter_preview = filter_stats

local path = args.out ~= "" and args.out or (args.pairs:gsub("%.jsonl$", "") .. ".report.json")
cai.analysis.write(report, path)
print(cai.analysis.format(report))
print(string.format("filters (min_score_delta %g): %d of %d pairs kept", args.min_score_delta,
  filter_stats.total_output, filter_stats.total_input))
print("analyze_pairs: report in " .. path)
