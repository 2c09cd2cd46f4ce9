-- cai.train: training from recipes.
--
--   cai.train.dpo_loss{ policy_chosen = {...}, policy_rejected = {...},
--                       reference_chosen = {...}, reference_rejected = {...},
--                       beta = 0.1, loss = "sigmoid", label_smoothing = 0 }
--     --> { losses = {...}, chosen_rewards = {...}, rejected_rewards = {...} }
--   cai.train.learning_rate{ lr = 5e-6, schedule = "cosine", total_steps = 100,
--                            warmup_ratio = 0.1, step = 10 }  --> number
--
-- The losses and schedules are TRL's and transformers' (docs/training.md).
local prim = require "cai._train"

local train = {}

---The valid DPO loss names, in documentation order.
train.dpo_loss_types = prim.dpo_loss_types()

local function joined(list)
  return table.concat(list, ", ")
end

local function check_keys(fname, opts, valid)
  local allowed = {}
  for _, k in ipairs(valid) do allowed[k] = true end
  for k in pairs(opts) do
    if not allowed[k] then
      error(string.format("%s: unknown field '%s' (valid fields: %s)", fname, tostring(k), joined(valid)), 3)
    end
  end
end

local function check_number_list(fname, opts, key)
  local xs = opts[key]
  if type(xs) ~= "table" then
    error(string.format("%s: field '%s' must be a list of numbers, got %s", fname, key, type(xs)), 3)
  end
  local n = #xs
  for k in pairs(xs) do
    if type(k) ~= "number" or k < 1 or k > n or k ~= math.floor(k) then
      error(string.format("%s: field '%s' must be a list (keys 1..n), found key %s", fname, key, tostring(k)), 3)
    end
  end
  for i = 1, n do
    if type(xs[i]) ~= "number" then
      error(string.format("%s: field '%s'[%d] must be a number, got %s", fname, key, i, type(xs[i])), 3)
    end
  end
  return n
end

local function check_number(fname, opts, key, default)
  local v = opts[key]
  if v == nil then return default end
  if type(v) ~= "number" then
    error(string.format("%s: field '%s' must be a number, got %s", fname, key, type(v)), 3)
  end
  return v
end

local DPO_LOSS_FIELDS = { "policy_chosen", "policy_rejected", "reference_chosen", "reference_rejected",
  "beta", "loss", "label_smoothing", "reference_free", "discopop_tau" }

---DPO-family losses for per-pair summed log-probabilities (TRL's DPOTrainer.dpo_loss).
---@param opts table { policy_chosen=, policy_rejected=, reference_chosen=, reference_rejected= (lists of numbers, same length), beta=0.1, loss="sigmoid", label_smoothing=0, reference_free=false, discopop_tau=0.05 }
---@return table { losses = {...}, chosen_rewards = {...}, rejected_rewards = {...} }
function train.dpo_loss(opts)
  local fname = "cai.train.dpo_loss"
  if type(opts) ~= "table" then error(fname .. ": expected a table of fields, got " .. type(opts), 2) end
  check_keys(fname, opts, DPO_LOSS_FIELDS)
  local n = check_number_list(fname, opts, "policy_chosen")
  for _, key in ipairs({ "policy_rejected", "reference_chosen", "reference_rejected" }) do
    local m = check_number_list(fname, opts, key)
    if m ~= n then
      error(string.format("%s: field '%s' has %d values but 'policy_chosen' has %d; all four lists need one value per pair",
        fname, key, m, n), 2)
    end
  end
  local beta = check_number(fname, opts, "beta", 0.1)
  if not (beta > 0) then error(fname .. ": field 'beta' must be positive, got " .. tostring(beta), 2) end
  local loss = opts.loss
  if loss == nil then loss = "sigmoid" end
  local valid = false
  for _, name in ipairs(train.dpo_loss_types) do valid = valid or name == loss end
  if not valid then
    error(string.format("%s: field 'loss' must be one of %s; got %s", fname, joined(train.dpo_loss_types),
      type(loss) == "string" and string.format("%q", loss) or type(loss)), 2)
  end
  local label_smoothing = check_number(fname, opts, "label_smoothing", 0)
  if not (label_smoothing >= 0 and label_smoothing <= 0.5) then
    error(fname .. ": field 'label_smoothing' must be in [0, 0.5], got " .. tostring(label_smoothing), 2)
  end
  local reference_free = opts.reference_free
  if reference_free ~= nil and type(reference_free) ~= "boolean" then
    error(fname .. ": field 'reference_free' must be a boolean, got " .. type(reference_free), 2)
  end
  local discopop_tau = check_number(fname, opts, "discopop_tau", 0.05)
  local ok, result = pcall(prim.dpo_loss, opts.policy_chosen, opts.policy_rejected, opts.reference_chosen,
    opts.reference_rejected, beta, loss, label_smoothing, reference_free == true, discopop_tau)
  if not ok then error(result, 2) end
  return result
end

local LR_FIELDS = { "lr", "schedule", "total_steps", "warmup_steps", "warmup_ratio", "step" }

---The learning rate before optimizer update `step` (0-based), as transformers' schedulers give it.
---@param opts table { lr=, schedule="linear"|"cosine"|"constant"|"constant_with_warmup", total_steps=, warmup_steps=0, warmup_ratio=0, step= }
---@return number
function train.learning_rate(opts)
  local fname = "cai.train.learning_rate"
  if type(opts) ~= "table" then error(fname .. ": expected a table of fields, got " .. type(opts), 2) end
  check_keys(fname, opts, LR_FIELDS)
  local lr = check_number(fname, opts, "lr", nil)
  if lr == nil then error(fname .. ": field 'lr' is required", 2) end
  local schedule = opts.schedule or "linear"
  if type(schedule) ~= "string" then error(fname .. ": field 'schedule' must be a string", 2) end
  for _, key in ipairs({ "total_steps", "step" }) do
    local v = opts[key]
    if type(v) ~= "number" or v ~= math.floor(v) then
      error(string.format("%s: field '%s' must be an integer, got %s", fname, key, tostring(v)), 2)
    end
  end
  local warmup_steps = check_number(fname, opts, "warmup_steps", 0)
  local warmup_ratio = check_number(fname, opts, "warmup_ratio", 0)
  local ok, result = pcall(prim.learning_rate, lr, schedule, opts.total_steps, warmup_steps, warmup_ratio, opts.step)
  if not ok then error(result, 2) end
  return result
end

return train
