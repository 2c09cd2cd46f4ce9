--- Models: Hugging Face Llama-family checkpoints (llama, mistral, qwen2,
--- gemma, gemma2), batched generation and scoring.
---
---   local m = cai.model.load("path/to/hf-model", { dtype = "bf16" })
---   local out = m:generate({ "Hello" }, { max_new_tokens = 32, temperature = 0.7, seed = 1, stop = { "END" } })
---   -- out[1] = { text = "...", finish = "stop"|"eos"|"length", tokens = { ... } }
---   local lp = m:logprobs({ "Q: 2+2=" }, { " 4" })        -- { { sum =, mean =, n = } }
---   m:logits({ { 1, 5, 9 } }):save("logits.safetensors")  -- float32 "logits" [B, T, V]
---   m.tokenizer, m.config, m:info(), m:release()
---   m:add_lora{ r = 16, alpha = 32 }, m:save_lora(dir), m:load_lora(dir), m:merge_lora(), m:save(dir)  (docs/lora.md)
local _model = require "cai._model"

local M = {}

local primitives = _model.metatable.__index
local Model = {}
-- m.config and m.tokenizer are built on first access, once per model.
local fields = setmetatable({}, { __mode = "k" })

_model.metatable.__index = function(self, key)
  local method = Model[key] or primitives[key]
  if method ~= nil then return method end
  if key == "config" or key == "tokenizer" then
    local cached = fields[self]
    if not cached then
      cached = {}
      fields[self] = cached
    end
    if cached[key] == nil then
      cached[key] = (key == "config") and primitives._config(self) or primitives._tokenizer(self)
    end
    return cached[key]
  end
  return nil
end

local function check_list(fname, what, v)
  if type(v) ~= "table" then
    error(string.format("%s: %s must be a list of strings or token-id lists, got %s", fname, what, type(v)), 3)
  end
end

local function check_opts(fname, opts)
  if opts ~= nil and type(opts) ~= "table" then
    error(string.format("%s: options must be a table, got %s", fname, type(opts)), 3)
  end
end

--- Loads a Hugging Face model directory (config.json, model.safetensors or
--- its sharded index, generation_config.json and, when present, the tokenizer
--- files). The compute dtype is the checkpoint's torch_dtype (bf16 for
--- bfloat16, else fp32) unless dtype is given. A directory without tokenizer
--- files (model.save_pretrained() alone writes none) loads too: m.tokenizer is
--- then an error, unless tokenizer = dir names where the tokenizer is.
---@param path string
---@param opts table|nil { dtype = "fp32"|"bf16", tokenizer = dir }
function M.load(path, opts)
  if type(path) ~= "string" then error("cai.model.load: path must be a string, got " .. type(path), 2) end
  check_opts("cai.model.load", opts)
  opts = opts or {}
  for k in pairs(opts) do
    if k ~= "dtype" and k ~= "tokenizer" then
      error("cai.model.load: unknown option '" .. tostring(k) .. "' (valid: dtype, tokenizer)", 2)
    end
  end
  if opts.dtype ~= nil and opts.dtype ~= "fp32" and opts.dtype ~= "bf16" then
    error('cai.model.load: dtype must be "fp32" or "bf16", got ' .. tostring(opts.dtype), 2)
  end
  if opts.tokenizer ~= nil and (type(opts.tokenizer) ~= "string" or opts.tokenizer == "") then
    error("cai.model.load: tokenizer must be a directory name (a non-empty string), got " .. tostring(opts.tokenizer), 2)
  end
  if path == "tiny" then  -- the embedded default, built once
    -- In a data-parallel job rank 0 builds it by itself while the others wait.
    local tiny, dist = require "cai.tiny", require "cai.dist"
    if dist.world_size() > 1 then
      if dist.is_main() then dist.alone(tiny.path) end
      dist.barrier("building the tiny model (raise CAI_DIST_TIMEOUT if it takes longer)")
    end
    path = tiny.path()
  end
  return _model.load(path, opts.dtype, opts.tokenizer)
end

--- Loads a reward model: a Hugging Face *ForSequenceClassification directory
--- (Llama family, num_labels = 1) with its tokenizer, in the checkpoint's
--- torch_dtype unless dtype is given. rm:score(texts, { batch_size = 8 })
--- returns one number per text (the head at the text's last token, BOS added
--- as the tokenizer says); rm:info(), rm:release().
---@param dir string
---@param opts table|nil { dtype = "fp32"|"bf16" }
function M.load_reward(dir, opts)
  if type(dir) ~= "string" then error("cai.model.load_reward: dir must be a string, got " .. type(dir), 2) end
  check_opts("cai.model.load_reward", opts)
  local classifier = require "cai.classifier"
  if classifier.is_encoder(classifier.model_type(dir)) then return classifier.load_reward(dir, opts) end
  opts = opts or {}
  for k in pairs(opts) do
    if k ~= "dtype" then error("cai.model.load_reward: unknown option '" .. tostring(k) .. "' (valid: dtype)", 2) end
  end
  if opts.dtype ~= nil and opts.dtype ~= "fp32" and opts.dtype ~= "bf16" then
    error('cai.model.load_reward: dtype must be "fp32" or "bf16", got ' .. tostring(opts.dtype), 2)
  end
  return require("cai._reward").load(dir, opts.dtype)
end

--- Loads an encoder classifier: a Hugging Face BERT, RoBERTa, DistilBERT or
--- DeBERTa-v2/v3 *ForSequenceClassification directory. clf:logits(batch),
--- clf:classify(texts), clf.config, clf:release() (see lua/cai/classifier.lua).
---@param dir string
---@param opts table|nil { dtype = "fp32"|"bf16", tokenizer = other_dir }
function M.load_classifier(dir, opts)
  return require("cai.classifier").load(dir, opts, "cai.model.load_classifier")
end

--- Writes a random model directory (config.json + model.safetensors) for
--- tests and benchmarks; add a tokenizer to the directory to load it. With
--- config.architectures = { "LlamaForSequenceClassification" } and num_labels = 1
--- it is a random reward model (a score head instead of lm_head), checked as
--- cai.model.load_reward checks one.
---@param dir string
---@param config table config.json fields (model_type, vocab_size, hidden_size, ...)
---@param opts table|nil { seed = 0, dtype = "fp32"|"bf16" }
function M.random(dir, config, opts)
  if type(dir) ~= "string" then error("cai.model.random: dir must be a string", 2) end
  if type(config) ~= "table" then error("cai.model.random: config must be a table", 2) end
  check_opts("cai.model.random", opts)
  opts = opts or {}
  if require("cai.classifier").is_encoder(tostring(config.model_type)) then
    -- an encoder *ForSequenceClassification checkpoint (bert, roberta, distilbert, deberta-v2)
    return require("cai._encoder").write_random(dir, require("cai.json").encode(config), opts.seed or 0)
  end
  return _model.write_random(dir, require("cai.json").encode(config), opts.seed or 0, opts.dtype or "fp32")
end

--- Generates a continuation per prompt, in batches. Each prompt samples from
--- its own stream (seed, prompt index): batch size never changes a sample.
---@param prompts table list of strings (encoded with BOS) or token-id lists
---@param opts table|nil { max_new_tokens = 256, temperature = 0 (greedy), top_k = 0, top_p = 1,
---  min_p = 0, repetition_penalty = 1, stop = { "END" }, seed = 0, batch_size = 16, progress = true,
---  use_lora = nil, first_index = 0 } -- prompts[i] samples from stream (seed, first_index + i - 1), so a
---  long list done in chunks samples as if done at once
---@return table list of { text =, finish = "stop"|"eos"|"length", tokens = { ... } }
function Model:generate(prompts, opts)
  check_list("m:generate", "prompts", prompts)
  check_opts("m:generate", opts)
  return self:_generate(prompts, opts)
end

--- log p(completion | prompt) per pair. Strings: the prompt is encoded with
--- special tokens (BOS), the completion on its own without them; the ids are
--- concatenated, so no token spans the boundary.
---@param prompts table list of strings or token-id lists
---@param completions table list of strings or token-id lists, same length
--- With eos = true each completion ends with the model's EOS token, as
--- cai.train.dpo scores a response (a finished answer, not a prefix).
---@param opts table|nil { batch_size = 8, use_lora = nil, eos = false }
---@return table list of { sum =, mean =, n = }
function Model:logprobs(prompts, completions, opts)
  check_list("m:logprobs", "prompts", prompts)
  check_list("m:logprobs", "completions", completions)
  if #prompts ~= #completions then
    error(string.format("m:logprobs: %d prompts but %d completions", #prompts, #completions), 2)
  end
  check_opts("m:logprobs", opts)
  return self:_logprobs(prompts, completions, opts)
end

--- Logits for a batch of equal-length id lists: a tensor with :shape(),
--- :at(b, t, v) and :save(path) (safetensors, float32 "logits" [B, T, V]).
--- Positions come from attention_mask, so left padding leaves the real
--- tokens' logits unchanged.
---@param ids table list of token-id lists
---@param opts table|nil { attention_mask = { {0, 1, 1}, ... }, use_lora = nil }
function Model:logits(ids, opts)
  if type(ids) ~= "table" then error("m:logits: ids must be a list of token-id lists", 2) end
  check_opts("m:logits", opts)
  return self:_logits(ids, opts)
end

-- ---- LoRA adapters and saving (primitives in cai._lora) ----

local _lora = require "cai._lora"

local function check_dir(fname, dir)
  if type(dir) ~= "string" or dir == "" then
    error(string.format("%s: dir must be a non-empty string, got %s", fname, type(dir)), 3)
  end
end

--- Attaches LoRA adapters with PEFT's semantics: A ~ kaiming_uniform(a = sqrt(5)),
--- B = 0 (float32, trainable), scale = alpha / r (alpha / sqrt(r) with rslora).
---@param opts table|nil { r = 8, alpha = 8, dropout = 0, targets = { "q_proj", "v_proj" } | "all-linear",
---  rslora = false, seed = 0 }; targets among q_proj k_proj v_proj o_proj gate_proj up_proj down_proj
function Model:add_lora(opts)
  check_opts("m:add_lora", opts)
  _lora.add(self, opts)
  return self
end

--- Writes the adapter in PEFT's layout (adapter_config.json, adapter_model.safetensors), atomically.
---@param dir string
function Model:save_lora(dir)
  check_dir("m:save_lora", dir)
  _lora.save(self, dir)
  return dir
end

--- Attaches a PEFT LoRA adapter directory (ours or PEFT's).
---@param dir string
function Model:load_lora(dir)
  check_dir("m:load_lora", dir)
  _lora.load(self, dir)
  return self
end

--- W += scale * B A in the weights' dtype; the adapters are then off (use m:unmerge_lora() to undo).
function Model:merge_lora()
  _lora.merge(self)
  return self
end

--- Subtracts what merge_lora added and switches the adapters back on.
function Model:unmerge_lora()
  _lora.unmerge(self)
  return self
end

--- Detaches the adapters. Merged adapters stay in the weights (PEFT's merge_and_unload): merge_lora()
--- then remove_lora() leaves the merged model; call unmerge_lora() before removing to undo a merge.
function Model:remove_lora()
  _lora.remove(self)
  return self
end

--- { r =, alpha =, dropout =, scale =, rslora =, merged =, targets = { ... } }, or nil without adapters.
function Model:lora_info()
  return _lora.info(self)
end

--- Writes a Hugging Face model directory (config.json as loaded, model.safetensors,
--- generation_config.json and tokenizer files copied), atomically. Merge LoRA adapters first.
---@param dir string
---@param opts table|nil { dtype = the model's compute dtype | "fp32" | "bf16" }
function Model:save(dir, opts)
  check_dir("m:save", dir)
  check_opts("m:save", opts)
  opts = opts or {}
  for k in pairs(opts) do
    if k ~= "dtype" then error("m:save: unknown option '" .. tostring(k) .. "' (valid: dtype)", 2) end
  end
  if opts.dtype ~= nil and opts.dtype ~= "fp32" and opts.dtype ~= "bf16" then
    error('m:save: dtype must be "fp32" or "bf16", got ' .. tostring(opts.dtype), 2)
  end
  _lora.save_model(self, dir, opts.dtype)
  return dir
end

return M
