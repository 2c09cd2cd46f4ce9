-- A stand-in recipe for the sweep test: writes out/summary.json with rates
-- that depend on seed and mode only (mode=b is 0.2 better on "good" and
-- the same on "flat", up to seed noise), or fails when fail=1.
local cai = require "cai"
local args = cai.args{ out = "", seed = 1, mode = "a", fail = 0 }
if args.fail == 1 then error("sweep_fixture: asked to fail", 0) end
local noise = ({ 0.01, -0.02, 0.03, 0.0, -0.01, 0.02 })[(args.seed - 1) % 6 + 1]
local good = 0.5 + noise + (args.mode == "b" and 0.2 + noise / 2 or 0)
cai.mkdir(args.out)
cai.json.write(args.out .. "/summary.json", { models = { m = {
  good = { rate = good, lo = good - 0.1, hi = good + 0.1, n = 50 },
  flat = { rate = 0.4 + noise, n = 50 } } } })
print("sweep_fixture: done")
