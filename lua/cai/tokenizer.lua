--- Tokenizers: Hugging Face tokenizer.json (byte-level BPE) and
--- sentencepiece tokenizer.model directories, with the ids transformers'
--- AutoTokenizer gives for the same directory.
---
---   local tok = cai.tokenizer.load("path/to/model")
---   local ids = tok:encode("Hello", { add_special_tokens = true })
---   local text = tok:decode(ids, { skip_special_tokens = true })
---   tok:encode_batch(texts, opts) / tok:decode_batch(list_of_ids, opts)  -- C++ threads
---   tok:vocab_size(), tok:id_to_piece(id), tok:piece_to_id(piece)        -- nil when absent
---   tok.bos_id, tok.eos_id, tok.pad_id                                    -- nil when absent
local _tokenizer = require "cai._tokenizer"
local check = require "cai.check"

local M = {}

--- Loads the tokenizer of an HF model directory (tokenizer.json, else tokenizer.model).
---@param dir string
function M.load(dir)
  check.value("cai.tokenizer.load", "dir", dir, { type = "string", expect = "a string (a model directory)" })
  return _tokenizer.load(dir)
end

local TRAIN_SPEC = {
  input = { type = "string|list", items = "string", required = true, expect = "a file name or a list of file names" },
  dir = { type = "string", nonempty = true }, model_prefix = { type = "string", nonempty = true },
  vocab_size = { type = "integer", min = 1 }, model_type = "string", style = "string", character_coverage = "number",
  byte_fallback = "boolean", split_digits = "boolean", threads = "integer", input_sentence_size = "integer",
  max_sentence_length = "integer", user_defined_symbols = { type = "list", items = "string" },
  control_symbols = { type = "list", items = "string" },
}

--- Trains a sentencepiece tokenizer and writes a directory (tokenizer.model +
--- tokenizer_config.json) that cai.tokenizer.load and transformers both read.
---@param opts table { input = file|{files}, dir = out dir, vocab_size = 8000, model_type = "bpe"|"unigram",
---                    style = "llama"|"gemma", character_coverage = 1.0, byte_fallback = true,
---                    split_digits = true, user_defined_symbols = {..}, control_symbols = {..}, threads = 1 }
---@return string dir
function M.train(opts)
  check("cai.tokenizer.train", opts, TRAIN_SPEC)
  if opts.dir == nil and opts.model_prefix ~= nil then
    -- sentencepiece's own name for the output location
    local copy = {}
    for k, v in pairs(opts) do copy[k] = v end
    copy.dir, copy.model_prefix = copy.model_prefix, nil
    opts = copy
  end
  return _tokenizer.train(opts)
end

--- True when v is a tokenizer object.
function M.is_tokenizer(v)
  if type(v) ~= "userdata" then return false end
  local mt = getmetatable(v)
  return mt ~= nil and mt.__name == "cai.tokenizer"
end

return M
