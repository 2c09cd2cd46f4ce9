-- cai.train: dpo_loss and learning_rate from Lua, values worked out by hand
-- (the same three pairs as tests/cpp/train_dpo_loss_test.cpp).
local spec = require "spec"
local cai = require "cai"

-- logits = (pc - pr) - (rc - rr) = [1, -1, -0.5]; beta = 0.5.
local pairs3 = {
  policy_chosen = { -1.0, -2.0, -3.0 },
  policy_rejected = { -2.0, -1.0, -3.5 },
  reference_chosen = { -1.5, -1.5, -2.0 },
  reference_rejected = { -1.5, -1.5, -3.0 },
}

local function with(extra)
  local t = {}
  for k, v in pairs(pairs3) do t[k] = v end
  for k, v in pairs(extra) do t[k] = v end
  return t
end

local function near_list(got, want, tol, what)
  spec.eq(#got, #want, what .. ": length")
  for i = 1, #want do spec.near(got[i], want[i], tol, what .. "[" .. i .. "]") end
end

spec.describe("cai.train.dpo_loss", function()
  spec.it("lists the twelve loss types", function()
    spec.eq(cai.train.dpo_loss_types, { "sigmoid", "robust", "ipo", "hinge", "exo_pair", "sppo_hard", "nca_pair",
      "apo_zero", "apo_down", "aot", "aot_pair", "discopop" })
  end)

  spec.it("computes every loss type from the hand-worked table", function()
    local table_ = {
      { "sigmoid", 0, { 0.474076984180, 0.974076984180, 0.825939419879 } },
      { "sigmoid", 0.1, { 0.524076984180, 0.924076984180, 0.800939419879 } },
      { "robust", 0.1, { 0.411576984180, 1.036576984180, 0.857189419879 } },
      { "ipo", 0, { 0, 4, 2.25 } },
      { "hinge", 0, { 0.5, 1.5, 1.25 } },
      { "exo_pair", 0, { 1.945734000110, 3.637327142047, 3.198420439613 } },
      { "sppo_hard", 0, { 0.5, 4.5, 4.25 } },
      { "nca_pair", 0, { 1.276878839758, 1.526878839758, 1.499085186210 } },
      { "apo_zero", 0, { 0.875646998228, 1.124353001772, 1.060282830316 } },
      { "apo_down", 0, { 0.939717169684, 1.060282830316, 0.939717169684 } },
      { "aot", 0, { 0.974076984180, 0.575939419879, 0.693147180560 } },
      { "aot_pair", 0.1, { 0.800939419879, 0.693147180560, 0.693147180560 } },
      { "discopop", 0, { 0.606524646598, 0.974107611593, 0.829005321166 } },
    }
    for _, row in ipairs(table_) do
      local r = cai.train.dpo_loss(with { beta = 0.5, loss = row[1], label_smoothing = row[2] })
      near_list(r.losses, row[3], 1e-9, row[1])
      near_list(r.chosen_rewards, { 0.25, -0.25, -0.5 }, 1e-12, "chosen_rewards")
      near_list(r.rejected_rewards, { -0.25, 0.25, -0.25 }, 1e-12, "rejected_rewards")
    end
  end)

  spec.it("defaults to sigmoid with beta 0.1", function()
    -- -log sigmoid(0.1 * 1) = log(1 + e^-0.1)
    local r = cai.train.dpo_loss(pairs3)
    spec.near(r.losses[1], math.log(1 + math.exp(-0.1)), 1e-12)
    spec.near(r.chosen_rewards[1], 0.05, 1e-12)
  end)

  spec.it("handles reference_free and an empty batch", function()
    local r = cai.train.dpo_loss(with { beta = 0.5, loss = "ipo", reference_free = true })
    near_list(r.losses, { 0, 4, 0.25 }, 1e-12, "ipo reference_free")
    local empty = cai.train.dpo_loss { policy_chosen = {}, policy_rejected = {}, reference_chosen = {},
      reference_rejected = {} }
    spec.eq(#empty.losses, 0)
  end)

  spec.it("rejects unknown fields, wrong types, mismatched lengths and unknown losses", function()
    spec.raises(function() cai.train.dpo_loss(with { betta = 0.1 }) end,
      "cai.train.dpo_loss: unknown option 'betta' (did you mean beta?)", true)
    spec.raises(function() cai.train.dpo_loss(with { policy_rejected = { -1, -2 } }) end,
      "option 'policy_rejected' has 2 values but 'policy_chosen' has 3", true)
    spec.raises(function() cai.train.dpo_loss(with { reference_chosen = { -1, "x", -2 } }) end,
      "option 'reference_chosen'[2] must be a number, got string", true)
    spec.raises(function() cai.train.dpo_loss(with { policy_chosen = "abc" }) end,
      "option 'policy_chosen' must be a list, got string", true)
    spec.raises(function() cai.train.dpo_loss(with { beta = "0.1" }) end, "option 'beta' must be a number, got string", true)
    spec.raises(function() cai.train.dpo_loss(with { beta = 0 }) end, "option 'beta' must be > 0, got 0", true)
    spec.raises(function() cai.train.dpo_loss(with { loss = "kto" }) end,
      "option 'loss' must be one of sigmoid, robust, ipo, hinge, exo_pair, sppo_hard, nca_pair, apo_zero, " ..
      "apo_down, aot, aot_pair, discopop; got \"kto\"", true)
    spec.raises(function() cai.train.dpo_loss(with { loss = "robust", label_smoothing = 0.5 }) end,
      "label_smoothing must be < 0.5", true)
    spec.raises(function() cai.train.dpo_loss(with { label_smoothing = 0.9 }) end,
      "option 'label_smoothing' must be in [0, 0.5], got 0.9", true)
    spec.raises(function() cai.train.dpo_loss(with { reference_free = 1 }) end,
      "option 'reference_free' must be a boolean, got number", true)
    spec.raises(function() cai.train.dpo_loss(nil) end, "cai.train.dpo_loss: expected an options table with option 'policy_chosen', got nil", true)
  end)

  spec.it("points errors at the caller", function()
    local _, err = pcall(function() cai.train.dpo_loss(with { loss = "nope" }) end)
    spec.truthy(tostring(err):find("train_spec.lua", 1, true), "error should name the calling file: " .. tostring(err))
  end)
end)

spec.describe("cai.train.learning_rate", function()
  spec.it("follows transformers' linear and cosine schedules with warmup", function()
    local function lr(schedule, step)
      return cai.train.learning_rate { lr = 1e-4, schedule = schedule, total_steps = 10, warmup_steps = 2, step = step }
    end
    spec.near(lr("linear", 0), 0, 1e-18)
    spec.near(lr("linear", 1), 0.5e-4, 1e-18)
    spec.near(lr("linear", 3), 0.875e-4, 1e-18)
    spec.near(lr("cosine", 6), 0.5e-4, 1e-18)
    spec.near(lr("cosine", 10), 0, 1e-18)
  end)

  spec.it("rounds warmup_ratio up and rejects bad settings", function()
    -- ceil(100 * 0.07) = 8 in doubles, so step 4 is halfway through warmup.
    spec.near(cai.train.learning_rate { lr = 1, total_steps = 100, warmup_ratio = 0.07, step = 4 }, 0.5, 1e-15)
    spec.raises(function() cai.train.learning_rate { lr = 1, schedule = "poly", total_steps = 10, step = 0 } end,
      "unknown type \"poly\"", true)
    spec.raises(function() cai.train.learning_rate { lr = 1, total_steps = 10, step = 0, warmup = 3 } end,
      "unknown option 'warmup' (valid options: lr, schedule, step, total_steps, warmup_ratio, warmup_steps)", true)
    spec.raises(function() cai.train.learning_rate { lr = 1, total_steps = 10.5, step = 0 } end,
      "option 'total_steps' must be an integer, got 10.5", true)
  end)
end)

spec.run()
