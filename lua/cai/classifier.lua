-- cai.classifier: encoder sequence classifiers (BERT, RoBERTa, DistilBERT,
-- DeBERTa-v2/v3 *ForSequenceClassification), loaded by
-- cai.model.load_classifier.
--
--   local clf = cai.model.load_classifier("models/safety-bert", { dtype = "fp32", tokenizer = other_dir })
--   clf:logits({ "text", ... })                                   --> { { l1, l2, ... }, ... }
--   clf:logits({ { "question", "answer" }, ... })                 -- (text, text_pair) pairs
--   clf:logits({ input_ids = {...}, attention_mask = {...}, token_type_ids = {...} })  -- as HF's forward
--   clf:classify({ "text", ... })   --> { { label =, score =, probs = { [label] = p } }, ... }
--   clf.config                      --> { model_type=, architecture=, num_labels=, id2label = { [0] = ... },
--                                         label2id=, problem_type=, ... }
--   clf:release()
--
-- Rows are tokenized as the model's tokenizer does ([CLS] a [SEP] b [SEP]
-- with token_type_ids), sorted by length into batches and right-padded; a
-- row's logits do not depend on the other rows. Options of logits/classify:
-- { batch_size = 16, progress = "label" }.
local _encoder = require "cai._encoder"
local check = require "cai.check"

local M = {}

local Classifier = {}
Classifier.__index = Classifier

-- The options of clf:logits, clf:classify and rm:score.
local BATCH_SPEC = {
  batch_size = { type = "integer", min = 1 },
  progress = { type = "string|boolean", expect = "a label string or a boolean" },
}

local function progress_label(opts, default)
  if opts.progress == false then return nil end
  if type(opts.progress) == "string" then return opts.progress end
  return default
end

local function int_list(fname, what, i, row)
  if type(row) ~= "table" then
    error(string.format("%s: %s[%d] must be a list of integers, got %s", fname, what, i, type(row)), 4)
  end
  for k, v in ipairs(row) do
    if type(v) ~= "number" or v ~= math.floor(v) then
      error(string.format("%s: %s[%d][%d] must be an integer, got %s", fname, what, i, k, tostring(v)), 4)
    end
  end
end

-- { input_ids =, attention_mask =, token_type_ids = } -> rows without their
-- padding (right padding only: these models read the first token).
local function strip_padding(fname, batch)
  local ids, mask, types = batch.input_ids, batch.attention_mask, batch.token_type_ids
  if type(ids) ~= "table" then error(fname .. ": input_ids must be a list of token-id lists", 3) end
  for key in pairs(batch) do
    if key ~= "input_ids" and key ~= "attention_mask" and key ~= "token_type_ids" then
      error(string.format("%s: unknown field '%s' in the token batch (valid: input_ids, attention_mask, "
        .. "token_type_ids)", fname, tostring(key)), 3)
    end
  end
  local rows, type_rows = {}, types and {} or nil
  for i = 1, #ids do
    int_list(fname, "input_ids", i, ids[i])
    local n = #ids[i]
    if mask then
      int_list(fname, "attention_mask", i, mask[i])
      if #mask[i] ~= #ids[i] then
        error(string.format("%s: attention_mask[%d] has %d entries for %d input_ids", fname, i, #mask[i], #ids[i]), 3)
      end
      n = 0
      for k, m in ipairs(mask[i]) do
        if m ~= 0 and m ~= 1 then
          error(string.format("%s: attention_mask[%d][%d] must be 0 or 1, got %s", fname, i, k, tostring(m)), 3)
        end
        if m == 1 then
          if n ~= k - 1 then
            error(string.format("%s: attention_mask[%d] has padding before real tokens; these models read the "
              .. "first token, so pad on the right (as their tokenizers do)", fname, i), 3)
          end
          n = k
        end
      end
      if n == 0 then error(string.format("%s: attention_mask[%d] has no real token", fname, i), 3) end
    end
    local row = {}
    for k = 1, n do row[k] = ids[i][k] end
    rows[i] = row
    if types then
      int_list(fname, "token_type_ids", i, types[i])
      if #types[i] ~= #ids[i] then
        error(string.format("%s: token_type_ids[%d] has %d entries for %d input_ids", fname, i, #types[i], #ids[i]), 3)
      end
      local t = {}
      for k = 1, n do t[k] = types[i][k] end
      type_rows[i] = t
    end
  end
  return rows, type_rows
end

-- The batch's kind: "ids", "texts" or "pairs", with texts and pairs split out.
local function split_batch(fname, batch)
  if type(batch) ~= "table" then
    error(fname .. ": batch must be a list of texts, a list of { text, text_pair } pairs or "
      .. "{ input_ids =, attention_mask =, token_type_ids = }, got " .. type(batch), 3)
  end
  if batch.input_ids ~= nil then return "ids" end
  local texts, pairs = {}, nil
  for i, item in ipairs(batch) do
    if type(item) == "string" then
      if pairs then error(string.format("%s: batch[%d] is a text but batch[1] is a pair; use one kind", fname, i), 3) end
      texts[i] = item
    elseif type(item) == "table" then
      local a, b = item[1] or item.text, item[2] or item.text_pair
      if type(a) ~= "string" or type(b) ~= "string" then
        error(string.format("%s: batch[%d] must be { text, text_pair } (two strings)", fname, i), 3)
      end
      if i > 1 and not pairs then
        error(string.format("%s: batch[%d] is a pair but batch[1] is a text; use one kind", fname, i), 3)
      end
      pairs = pairs or {}
      texts[i], pairs[i] = a, b
    else
      error(string.format("%s: batch[%d] must be a string or a { text, text_pair } pair, got %s", fname, i,
        type(item)), 3)
    end
  end
  return pairs and "pairs" or "texts", texts, pairs
end

---Logits of every row: one list of num_labels numbers per row.
---@param batch table texts | { {text, text_pair}, ... } | { input_ids=, attention_mask=, token_type_ids= }
---@param opts table|nil { batch_size = 16, progress = "label"|false }
function Classifier:logits(batch, opts)
  opts = check("clf:logits", opts, BATCH_SPEC)
  local kind, texts, pairs = split_batch("clf:logits", batch)
  local label = progress_label(opts, self.config.model_type)  -- a bar on a terminal, silent otherwise
  if kind == "ids" then
    local rows, type_rows = strip_padding("clf:logits", batch)
    return self._e:logits_ids(rows, type_rows, opts.batch_size or 16, label)
  end
  if not self.config.has_tokenizer then
    error("clf:logits: " .. self.config.path .. " was loaded without a tokenizer (no tokenizer files); load it "
      .. "with { tokenizer = dir } or pass { input_ids = ... }", 2)
  end
  return self._e:logits_texts(texts, pairs, opts.batch_size or 16, label)
end

-- transformers' text-classification pipeline: sigmoid for multi-label or one
-- label, softmax for single-label or several labels, none for regression.
local function function_to_apply(config)
  if config.problem_type == "regression" then return "none" end
  if config.problem_type == "multi_label_classification" or config.num_labels == 1 then return "sigmoid" end
  return "softmax"
end
M.function_to_apply = function_to_apply

---Probabilities of each label from one row of logits, as the config says.
function M.probabilities(config, logits)
  require("cai.check").value("cai.classifier.probabilities", "config", config, "table")
  require("cai.check").value("cai.classifier.probabilities", "logits", logits, "list")
  local how = function_to_apply(config)
  local out = {}
  if how == "sigmoid" then
    for i, x in ipairs(logits) do out[i] = 1 / (1 + math.exp(-x)) end
  elseif how == "softmax" then
    local max = -math.huge
    for _, x in ipairs(logits) do if x > max then max = x end end
    local sum = 0
    for i, x in ipairs(logits) do out[i] = math.exp(x - max); sum = sum + out[i] end
    for i = 1, #out do out[i] = out[i] / sum end
  else
    for i, x in ipairs(logits) do out[i] = x end
  end
  return out, how
end

---Classifies rows: { label =, score =, probs = { [label] = p } } per row,
---label being the most probable (for regression: score is the raw output).
---@param batch table as clf:logits takes
---@param opts table|nil { batch_size = 16, progress = "label"|false }
function Classifier:classify(batch, opts)
  opts = check("clf:classify", opts, BATCH_SPEC)
  local logits = self:logits(batch, opts)
  local labels = self.config.labels
  local out = {}
  for i, row in ipairs(logits) do
    local p = M.probabilities(self.config, row)
    local best = 1
    for l = 2, #p do if p[l] > p[best] then best = l end end
    local probs = {}
    for l = 1, #p do probs[labels[l]] = p[l] end
    out[i] = { label = labels[best], score = p[best], probs = probs, logits = row }
  end
  return out
end

---The token ids and segments the model gets for texts (and pairs).
function Classifier:encode(texts, pairs)
  if not self.config.has_tokenizer then error("clf:encode: " .. self.config.path .. " has no tokenizer", 2) end
  return self._e:encode(texts, pairs)
end

function Classifier:release()
  self._e:release()
end

---@param dir string a Hugging Face *ForSequenceClassification directory (bert, roberta, distilbert, deberta-v2)
---@param opts table|nil { dtype = "fp32"|"bf16", tokenizer = other_dir }
function M.load(dir, opts, fname)
  fname = fname or "cai.model.load_classifier"
  check.value(fname, "dir", dir, "string", 4)
  opts = check(fname, opts, { dtype = { type = "string", enum = { "fp32", "bf16" } },
    tokenizer = { type = "string", nonempty = true, expect = "a directory name (a non-empty string)" } }, 4)
  local e = _encoder.load(dir, opts.dtype or "fp32", opts.tokenizer)
  local config = e:config()
  config.id2label, config.label2id = {}, {}
  for i, name in ipairs(config.labels) do
    config.id2label[i - 1] = name
    config.label2id[name] = i - 1
  end
  return setmetatable({ _e = e, config = config }, Classifier)
end

---Whether config.json's model_type is one of the encoder families.
function M.is_encoder(model_type) return type(model_type) == "string" and _encoder.is_encoder(model_type) end

---config.json's model_type in dir, or nil when it has none (or no readable config.json).
function M.model_type(dir)
  local f = io.open(dir .. "/config.json", "rb")
  if not f then return nil end
  local text = f:read("*a")
  f:close()
  local ok, config = pcall(require("cai.json").decode, text)
  if ok and type(config) == "table" and type(config.model_type) == "string" then return config.model_type end
  return nil
end

-- ------------------------------------------------------------ reward model

local Reward = {}
Reward.__index = Reward

---Scores texts, or (prompt, response) pairs when two lists are given (as the
---OpenAssistant reward models read tokenizer(question, answer)): the one
---logit per row.
---@param texts table list of strings (the prompts when responses is given)
---@param responses table|nil list of strings
---@param opts table|nil { batch_size = 16, progress = "label"|false }
function Reward:score(texts, responses, opts)
  if opts == nil and type(responses) == "table" and responses[1] == nil
      and (next(responses) ~= nil or (type(texts) == "table" and #texts > 0)) then
    responses, opts = nil, responses  -- rm:score(texts, { batch_size = 8 })
  end
  opts = check("rm:score", opts, BATCH_SPEC)
  if type(texts) ~= "table" then error("rm:score: texts must be a list of strings", 2) end
  local batch = texts
  if responses ~= nil then
    if type(responses) ~= "table" or #responses ~= #texts then
      error(string.format("rm:score: %d prompts but %s responses", #texts,
        type(responses) == "table" and tostring(#responses) or type(responses)), 2)
    end
    batch = {}
    for i = 1, #texts do
      if type(texts[i]) ~= "string" or type(responses[i]) ~= "string" then
        error(string.format("rm:score: prompts[%d] and responses[%d] must be strings", i, i), 2)
      end
      batch[i] = { texts[i], responses[i] }
    end
  else
    for i = 1, #texts do
      if type(texts[i]) ~= "string" then error(string.format("rm:score: texts[%d] must be a string", i), 2) end
    end
  end
  local logits = self.classifier:logits(batch, opts)
  local out = {}
  for i, row in ipairs(logits) do out[i] = row[1] end
  return out
end

function Reward:info()
  local c = self.classifier.config
  return { architecture = c.architecture, model_type = c.model_type, dtype = c.dtype, parameters = c.parameters,
    path = c.path, pairs = true }
end

function Reward:release()
  self.classifier:release()
end

---A one-label encoder classifier as a reward model (cai.model.load_reward).
---@param dir string
---@param opts table|nil { dtype = "fp32"|"bf16", tokenizer = other_dir }
function M.load_reward(dir, opts)
  local clf = M.load(dir, opts, "cai.model.load_reward")
  if clf.config.num_labels ~= 1 then
    local n = clf.config.num_labels
    clf:release()
    error(string.format("cai.model.load_reward: %s/config.json: num_labels is %d; a reward model has exactly one "
      .. "output (use cai.model.load_classifier or cai.scoring.classifier for a %d-label classifier)", dir, n, n), 2)
  end
  if not clf.config.has_tokenizer then
    clf:release()
    error("cai.model.load_reward: " .. dir .. " has no tokenizer files (tokenizer.json or tokenizer.model); a "
      .. "reward model scores text, so save its tokenizer beside it or pass { tokenizer = dir }", 2)
  end
  return setmetatable({ classifier = clf, pairs = true }, Reward)
end

return M
