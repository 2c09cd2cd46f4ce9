-- Literal expected values, worked out by hand (see the comment on each).
local spec = require "spec"
local cai = require "cai"
local S = cai.stats

spec.describe("stats", function()
  spec.it("McNemar exact on a small table", function()
    -- b=2, c=8: n=10, p = 2 * P(X<=2 | Bin(10, 1/2)) = 2 * (1 + 10 + 45) / 1024 = 112/1024
    local r = S.mcnemar(2, 8)
    spec.eq(r.method, "exact")
    spec.near(r.p, 0.109375, 1e-12)
    spec.near(r.odds_ratio, 0.25, 1e-12)
  end)
  spec.it("McNemar chi-square with continuity correction", function()
    -- b=10, c=25: chi2 = (|10-25| - 1)^2 / 35 = 196/35 = 5.6; p = erfc(sqrt(2.8)) = 0.0179605
    local r = S.mcnemar(10, 25)
    spec.eq(r.method, "chi2")
    spec.near(r.statistic, 5.6, 1e-12)
    spec.near(r.p, 0.0179605, 1e-6)
    -- forced chi-square on b=2, c=8: (6-1)^2/10 = 2.5; p = erfc(sqrt(1.25)) = 0.1138463
    spec.near(S.mcnemar(2, 8, { exact = false }).p, 0.1138463, 1e-6)
    spec.eq(S.mcnemar(0, 0).p, 1)
  end)
  spec.it("McNemar from paired pass/fail lists", function()
    local a = { true, true, true, false, true, false }
    local b = { true, false, false, false, true, true }
    local r = S.mcnemar_paired(a, b)
    spec.eq({ r.b, r.c }, { 2, 1 })
    -- p = 2 * P(X<=1 | Bin(3, 1/2)) = 2 * 4/8 = 1
    spec.near(r.p, 1, 1e-12)
  end)
  spec.it("sign test", function()
    -- 9 wins, 1 loss: p = 2 * (1 + 10)/1024 = 22/1024
    spec.near(S.sign_test(9, 1).p, 0.021484375, 1e-12)
    local r = S.paired_sign_test({ 3, 2, 5, 1, 4 }, { 1, 2, 4, 0, 5 })
    spec.eq({ r.wins, r.losses, r.ties }, { 3, 1, 1 })
    -- 3 vs 1: p = 2 * (1 + 4)/16 = 0.625
    spec.near(r.p, 0.625, 1e-12)
  end)
  spec.it("Holm correction", function()
    -- sorted 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> max(0.06, 0.04) = 0.06
    local adj, rej = S.holm({ 0.01, 0.04, 0.03, 0.005 })
    spec.near(adj[1], 0.03, 1e-12)
    spec.near(adj[2], 0.06, 1e-12)
    spec.near(adj[3], 0.06, 1e-12)
    spec.near(adj[4], 0.02, 1e-12)
    spec.eq(rej, { true, false, false, true })
    local capped = S.holm({ 0.5, 0.9 })
    spec.eq(capped, { 1, 1 })
  end)
  spec.it("effect sizes", function()
    -- h = 2 asin(sqrt .5) - 2 asin(sqrt .25) = pi/2 - pi/3 = pi/6
    spec.near(S.cohen_h(0.5, 0.25), math.pi / 6, 1e-12)
    -- differences 1, 2, 3: mean 2, sd 1 -> d = 2
    spec.near(S.cohen_d_paired({ 2, 4, 6 }, { 1, 2, 3 }), 2, 1e-12)
  end)
  spec.it("Wilson interval", function()
    -- k=5, n=10, z=1.96: centre 0.5, half-width 0.2634069
    local lo, hi = S.wilson(5, 10)
    spec.near(lo, 0.2365931, 1e-6)
    spec.near(hi, 0.7634069, 1e-6)
    spec.eq({ S.wilson(0, 0) }, { 0, 1 })
  end)
  spec.it("normal and chi-square tails", function()
    spec.near(S.normal_cdf(0), 0.5, 1e-7)
    spec.near(S.normal_cdf(1.959963984540054), 0.975, 1e-6)
    spec.near(S.chi2_sf_1(3.841458820694124), 0.05, 1e-6)
  end)
  spec.it("quantile and binomial cdf", function()
    spec.eq(S.quantile({ 1, 2, 3, 4 }, 0.5), 2.5)
    spec.eq(S.quantile({ 1, 2, 3, 4 }, 0), 1)
    spec.near(S.binom_cdf(2, 4, 0.5), 11 / 16, 1e-12)
  end)
  spec.it("bootstrap interval contains the mean and is reproducible", function()
    local xs = { 1, 0, 1, 1, 0, 1, 1, 1, 0, 1 }
    local a = S.bootstrap_ci(xs, { seed = 3, n = 500 })
    local b = S.bootstrap_ci(xs, { seed = 3, n = 500 })
    spec.eq(a, b)
    spec.near(a.estimate, 0.7, 1e-12)
    spec.truthy(a.lo < 0.7 and a.hi > 0.7 and a.lo >= 0 and a.hi <= 1, "interval around 0.7")
    local c = S.bootstrap_ci({ 2, 2, 2 }, { seed = 1, n = 100 })
    spec.eq({ c.lo, c.hi }, { 2, 2 })
    local bools = S.bootstrap_ci({ true, false }, { seed = 1, n = 50 })
    spec.near(bools.estimate, 0.5, 1e-12)
  end)
  spec.it("checks arguments", function()
    spec.raises(function() S.mcnemar(-1, 2) end, "b must be a non%-negative integer")
    spec.raises(function() S.holm({ 0.1, "x" }) end, "p%-values%[2%] must be a number")
    spec.raises(function() S.cohen_h(2, 0) end, "proportions")
  end)
end)
spec.run()
