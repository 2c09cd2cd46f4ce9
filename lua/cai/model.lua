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
local check = require "cai.check"

local M = {}

-- What each model was made from, as a fingerprint (cai.run.fingerprint): its
-- directory's files when loaded, then every change to its weights or adapters.
local lineage = setmetatable({}, { __mode = "k" })
local function derive(m, ...)
  if lineage[m] then
    lineage[m] = require("cai._run").hash(lineage[m] .. "|" .. table.concat({ ... }, "|"))
  end
end

---The fingerprint of a model: the files it was loaded from and what was done to it since
---(adapters added or loaded, merged, trained); nil for other values.
---@param m userdata
---@return string|nil
function M.fingerprint(m)
  return lineage[m]
end

---After training: the trainer's fingerprint becomes part of the model's.
function M._trained(m, trainer_fingerprint)
  derive(m, "trained", trainer_fingerprint)
end

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

local TEXTS = { type = "table", expect = "a list of strings or token-id lists" }
local DTYPE = { type = "string", enum = { "fp32", "bf16" } }
local LOAD_SPEC = { dtype = DTYPE, weights = { type = "string", enum = { "int8" },
    expect = '"int8" (per-row int8 projection weights; leave it out for the compute dtype)' },
  tokenizer = { type = "string", nonempty = true, expect = "a directory name (a non-empty string)" } }
local RANDOM_SPEC = { seed = "integer", dtype = DTYPE }
local GENERATE_SPEC = {
  max_new_tokens = "integer", temperature = "number", top_k = "integer", top_p = "number", min_p = "number",
  repetition_penalty = "number", stop = { type = "string|list", items = "string" }, seed = "integer",
  batch_size = "integer", progress = { type = "boolean|string", expect = 'a boolean or a label string' }, use_lora = "boolean", first_index = { type = "integer", min = 0 },
  streams = { type = "list", items = { type = "integer", min = 0 } },
  prefix_cache = "boolean", prefill_chunk = { type = "integer", min = 1 }, kv_cache_mb = { type = "number", min = 0, finite = true },
}
local LOGPROBS_SPEC = { batch_size = "integer", use_lora = "boolean", eos = "boolean" }
local LOGITS_SPEC = { attention_mask = "table", use_lora = "boolean" }
local LORA_SPEC = {
  r = "integer", alpha = "number", dropout = "number", rslora = "boolean", seed = "integer",
  targets = { type = "string|list", items = "string" },
}

--- The directory a model name stands for: "tiny" is the embedded default and "tiny-helpful" its
--- helpful-only start (each built once, cached), any other name is a directory as it is.
---@param path string
---@return string dir
function M.resolve(path)
  check.value("cai.model.resolve", "path", path, "string")
  if path == "tiny" or path == "tiny-helpful" then
    -- The embedded default, or its helpful-only start, built once. In a
    -- data-parallel job rank 0 builds it by itself while the others wait.
    local tiny, dist = require "cai.tiny", require "cai.dist"
    local build = path == "tiny" and tiny.path or tiny.helpful_path
    if dist.world_size() > 1 then
      if dist.is_main() then dist.alone(build) end
      dist.barrier("building the tiny model (raise CAI_DIST_TIMEOUT if it takes longer)")
    end
    path = build()
  end
  return path
end

--- Loads a Hugging Face model directory (config.json, model.safetensors or
--- its sharded index, generation_config.json and, when present, the tokenizer
--- files). The compute dtype is the checkpoint's torch_dtype (bf16 for
--- bfloat16, else fp32) unless dtype is given. A directory without tokenizer
--- files (model.save_pretrained() alone writes none) loads too: m.tokenizer is
--- then an error, unless tokenizer = dir names where the tokenizer is.
--- weights = "int8" quantizes the decoder's projection weights once at load
--- (symmetric, one float32 scale per output row; embeddings, norms and lm_head
--- stay in the compute dtype): decode reads a quarter of float32's bytes;
--- LoRA adapters train on top of the frozen int8 base; merge_lora and save
--- need the float weights (docs/models.md, "int8 weights").
---@param path string
---@param opts table|nil { dtype = "fp32"|"bf16", tokenizer = dir, weights = "int8" }
function M.load(path, opts)
  check.value("cai.model.load", "path", path, "string")
  opts = check("cai.model.load", opts, LOAD_SPEC)
  path = M.resolve(path)
  local m = _model.load(path, opts.dtype, opts.tokenizer)
  if opts.weights == "int8" then m:_quantize_int8() end
  local run = require "cai._run"
  lineage[m] = run.path_fingerprint(path) .. "|" .. m:info().dtype .. (opts.weights and ("|" .. opts.weights) or "")
    .. (opts.tokenizer and ("|tokenizer=" .. run.path_fingerprint(opts.tokenizer)) or "")
  return m
end

--- Loads a reward model: a Hugging Face *ForSequenceClassification directory
--- (Llama family, num_labels = 1) with its tokenizer, in the checkpoint's
--- torch_dtype unless dtype is given. rm:score(texts, { batch_size = 8 })
--- returns one number per text (the head at the text's last token, BOS added
--- as the tokenizer says); rm:info(), rm:release().
---@param dir string
---@param opts table|nil { dtype = "fp32"|"bf16" }
function M.load_reward(dir, opts)
  check.value("cai.model.load_reward", "dir", dir, "string")
  local classifier = require "cai.classifier"
  if classifier.is_encoder(classifier.model_type(dir)) then return classifier.load_reward(dir, opts) end
  opts = check("cai.model.load_reward", opts, { dtype = DTYPE })
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
  check.value("cai.model.random", "dir", dir, "string")
  check.value("cai.model.random", "config", config, "table")
  opts = check("cai.model.random", opts, RANDOM_SPEC)
  if require("cai.classifier").is_encoder(tostring(config.model_type)) then
    -- an encoder *ForSequenceClassification checkpoint (bert, roberta, distilbert, deberta-v2)
    return require("cai._encoder").write_random(dir, require("cai.json").encode(config), opts.seed or 0)
  end
  return _model.write_random(dir, require("cai.json").encode(config), opts.seed or 0, opts.dtype or "fp32")
end

--- Generates a continuation per prompt with continuous batching: batch_size
--- slots, a finished row's slot taken by the next prompt at the next step,
--- prompts that start alike sharing the KV blocks of that prefix. Each prompt
--- samples from its own stream (seed, prompt index): batch size, slot and
--- sharing never change a sample (docs/models.md, "Generation engine").
---@param prompts table list of strings (encoded with BOS) or token-id lists
---@param opts table|nil { max_new_tokens = 256, temperature = 0 (greedy), top_k = 0, top_p = 1,
---  min_p = 0, repetition_penalty = 1, stop = { "END" }, seed = 0, batch_size = 16, progress = true,
---  use_lora = nil, first_index = 0, prefix_cache = true, prefill_chunk = 512, kv_cache_mb = 0 (sized to
---  the call) } -- prompts[i] samples from stream (seed, first_index + i - 1), so a long list done in
---  chunks samples as if done at once; streams = { ... } (one per prompt) names each prompt's stream
---  instead, so a subset of a list (items asked again) keeps each item's own stream
---@return table list of { text =, finish = "stop"|"eos"|"length", tokens = { ... } }
function Model:generate(prompts, opts)
  check.value("m:generate", "prompts", prompts, TEXTS)
  check("m:generate", opts, GENERATE_SPEC)
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
  check.value("m:logprobs", "prompts", prompts, TEXTS)
  check.value("m:logprobs", "completions", completions, TEXTS)
  if #prompts ~= #completions then
    error(string.format("m:logprobs: %d prompts but %d completions", #prompts, #completions), 2)
  end
  check("m:logprobs", opts, LOGPROBS_SPEC)
  return self:_logprobs(prompts, completions, opts)
end

--- Logits for a batch of equal-length id lists: a tensor with :shape(),
--- :at(b, t, v) and :save(path) (safetensors, float32 "logits" [B, T, V]).
--- Positions come from attention_mask, so left padding leaves the real
--- tokens' logits unchanged.
---@param ids table list of token-id lists
---@param opts table|nil { attention_mask = { {0, 1, 1}, ... }, use_lora = nil }
function Model:logits(ids, opts)
  check.value("m:logits", "ids", ids, { type = "table", expect = "a list of token-id lists" })
  check("m:logits", opts, LOGITS_SPEC)
  return self:_logits(ids, opts)
end

-- ---- LoRA adapters and saving (primitives in cai._lora) ----

local _lora = require "cai._lora"

local DIR = { type = "string", nonempty = true }

--- Attaches LoRA adapters with PEFT's semantics: A ~ kaiming_uniform(a = sqrt(5)),
--- B = 0 (float32, trainable), scale = alpha / r (alpha / sqrt(r) with rslora).
---@param opts table|nil { r = 8, alpha = 8, dropout = 0, targets = { "q_proj", "v_proj" } | "all-linear",
---  rslora = false, seed = 0 }; targets among q_proj k_proj v_proj o_proj gate_proj up_proj down_proj
function Model:add_lora(opts)
  check("m:add_lora", opts, LORA_SPEC)
  _lora.add(self, opts)
  derive(self, "add_lora", require("cai.json").encode(opts or {}))
  return self
end

--- Writes the adapter in PEFT's layout (adapter_config.json, adapter_model.safetensors), atomically.
---@param dir string
function Model:save_lora(dir)
  check.value("m:save_lora", "dir", dir, DIR)
  _lora.save(self, dir)
  return dir
end

--- Attaches a PEFT LoRA adapter directory (ours or PEFT's).
---@param dir string
function Model:load_lora(dir)
  check.value("m:load_lora", "dir", dir, DIR)
  _lora.load(self, dir)
  derive(self, "load_lora", require("cai._run").path_fingerprint(dir))
  return self
end

--- W += scale * B A in the weights' dtype; the adapters are then off (use m:unmerge_lora() to undo).
function Model:merge_lora()
  _lora.merge(self)
  derive(self, "merge_lora")
  return self
end

--- Subtracts what merge_lora added and switches the adapters back on.
function Model:unmerge_lora()
  _lora.unmerge(self)
  derive(self, "unmerge_lora")
  return self
end

--- Detaches the adapters. Merged adapters stay in the weights (PEFT's merge_and_unload): merge_lora()
--- then remove_lora() leaves the merged model; call unmerge_lora() before removing to undo a merge.
function Model:remove_lora()
  _lora.remove(self)
  derive(self, "remove_lora")
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
  check.value("m:save", "dir", dir, DIR)
  opts = check("m:save", opts, { dtype = DTYPE })
  self:_save(dir, opts.dtype)
  return dir
end

return M
