-- cai.tiny: the embedded default model, cai.model.load("tiny").
--
-- Nothing is downloaded. On first use it is built from its recipe below and
-- cached in a per-user directory ($CAI_CACHE_DIR, else $XDG_CACHE_HOME/cairun,
-- else ~/.cache/cairun) under a name that fingerprints the recipe, so it is
-- rebuilt only when the recipe changes:
--   1. a plain-prose corpus from cai.world (facts, arithmetic, definitions,
--      stories, a few lines about not hurting people) — no
--      Instruction:/Response:/END format, so the model does not know it yet —
--      and demonstrations of the Constitutional-AI moves written from the
--      principles of constitutions/tiny_world.yaml (critique then revision or
--      KEEP_ORIGINAL; "Which answer is more <principle>? (A)/(B)");
--   2. a sentencepiece tokenizer trained on that corpus;
--   3. a small Llama-architecture model pretrained on the corpus as a plain
--      continuation model (every token of a line is trained);
--   4. saved as a Hugging Face directory (config.json, model.safetensors,
--      tokenizer files) and renamed into place when complete.
-- One seed decides all of it; the same recipe gives the same model.
local cai = require "cai"
local check = require "cai.check"

local tiny = {}

---The recipe. Bump `version` whenever the code that builds the model
---changes in a way that changes the result (the corpus, the trainer).
tiny.recipe = {
  version = 2,
  seed = 42,
  corpus_lines = 6000,
  -- Constitutional-AI demonstrations (cai.world:cai_corpus) written from the
  -- principles of this constitution; its text is part of the cache name, so
  -- an edited file gives a rebuilt model. A relative path is looked up in the
  -- working directory, then in the source tree the cairun binary was built from.
  constitution = "constitutions/tiny_world.yaml",
  cai_lines = 3000,
  vocab_size = 1024,
  hidden_size = 128,
  intermediate_size = 352,
  layers = 4,
  heads = 4,
  kv_heads = 2,
  max_position = 512,
  max_steps = 800,
  batch_size = 16,
  learning_rate = 3e-3,
  warmup_ratio = 0.05,
}

-- The recipe overrides: each field has the type of its default.
local function merged(recipe)
  local spec = {}
  for k, v in pairs(tiny.recipe) do spec[k] = type(v) end
  check("cai.tiny.path: recipe", recipe, spec, 4)
  local out = {}
  for k, v in pairs(tiny.recipe) do out[k] = v end
  for k, v in pairs(recipe or {}) do out[k] = v end
  return out
end

local exists = require("cai._core").exists

-- This process's id (a temporary name no concurrent builder shares).
local function pid()
  local f = io.open("/proc/self/stat", "r")
  local id = f and f:read("*n")
  if f then f:close() end
  return id or os.time()
end

-- The constitution file of a recipe: the path as given (absolute, or
-- relative to the working directory), else relative to the source tree of
-- the running cairun (<tree>/build/cairun).
local function constitution_path(path)
  if exists(path) or path:sub(1, 1) == "/" then
    if not exists(path) then error("cai.tiny: recipe constitution " .. path .. " does not exist", 4) end
    return path
  end
  local tried = { path }
  local p = io.popen("readlink -f /proc/" .. math.floor(pid()) .. "/exe 2>/dev/null")
  local exe = p and p:read("*l")
  if p then p:close() end
  if exe and exe ~= "" then
    local tree = exe:gsub("/[^/]*$", ""):gsub("/[^/]*$", "")
    local candidate = tree .. "/" .. path
    if exists(candidate) then return candidate end
    tried[#tried + 1] = candidate
  end
  error("cai.tiny: the tiny world's constitution " .. path .. " was not found (looked at " .. table.concat(tried, ", ")
    .. "); run from the cairun source tree or pass recipe.constitution = an absolute path", 4)
end

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local text = f:read("*a")
  f:close()
  return text
end

-- FNV-1a over the recipe's canonical JSON (and the constitution's text),
-- twice with different offsets: 16 hex digits.
local function fingerprint(recipe, constitution_text)
  local text = cai.json.encode(recipe) .. "|" .. cai.version .. "|" .. (constitution_text or "")
  local function fnv(offset)
    local h = offset
    for i = 1, #text do
      h = bit.bxor(h, text:byte(i))
      h = bit.tobit(h * 16777619)
    end
    return bit.tohex(h)
  end
  return fnv(bit.tobit(2166136261)) .. fnv(bit.tobit(0x9747b28c))
end

local function shell_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

---The cache directory for built models.
function tiny.cache_root()
  local dir = os.getenv("CAI_CACHE_DIR")
  if dir and dir ~= "" then return dir end
  local xdg = os.getenv("XDG_CACHE_HOME")
  if xdg and xdg ~= "" then return xdg .. "/cairun" end
  local home = os.getenv("HOME")
  if not home or home == "" then
    error("cai.tiny: no cache directory: set CAI_CACHE_DIR (or HOME / XDG_CACHE_HOME)", 3)
  end
  return home .. "/.cache/cairun"
end


-- Saves m into tmp/final, releases it and renames it to dir, removing tmp.
-- Two processes may build at once (two tests on a fresh cache): the first
-- rename wins, the other finds the model there and drops its own copy.
local function publish(m, tmp, dir)
  m:save(tmp .. "/final")
  m:release()
  local moved, err = os.rename(tmp .. "/final", dir)
  os.execute("rm -rf " .. shell_quote(tmp))
  if not moved and not exists(dir .. "/config.json") then
    error("cai.tiny: cannot move the built model into " .. dir .. ": " .. tostring(err), 4)
  end
end

local function build(dir, recipe)
  local tmp = string.format("%s.tmp.%d", dir, pid())
  os.execute("rm -rf " .. shell_quote(tmp) .. " && mkdir -p " .. shell_quote(tmp))
  cai.log.info("building the tiny default model into " .. dir .. " (once; cached)")

  local world = cai.world.new{ seed = recipe.seed }
  local lines = world:pretraining_corpus(recipe.corpus_lines)
  if recipe.cai_lines > 0 then
    local constitution = cai.constitution.load(constitution_path(recipe.constitution))
    for _, line in ipairs(world:cai_corpus(constitution, recipe.cai_lines)) do lines[#lines + 1] = line end
    cai.rng(recipe.seed):derive("tiny/corpus"):shuffle(lines)
  end
  local corpus_path = tmp .. "/corpus.txt"
  local f = assert(io.open(corpus_path, "w"))
  for _, line in ipairs(lines) do f:write(line, "\n") end
  f:close()

  local model_dir = tmp .. "/model"
  cai.tokenizer.train{ input = corpus_path, dir = model_dir, vocab_size = recipe.vocab_size }
  local tok = cai.tokenizer.load(model_dir)
  cai.model.random(model_dir, {
    model_type = "llama", vocab_size = tok:vocab_size(), hidden_size = recipe.hidden_size,
    intermediate_size = recipe.intermediate_size, num_hidden_layers = recipe.layers,
    num_attention_heads = recipe.heads, num_key_value_heads = recipe.kv_heads,
    max_position_embeddings = recipe.max_position, bos_token_id = tok.bos_id, eos_token_id = tok.eos_id,
    rms_norm_eps = 1e-5, rope_theta = 10000, tie_word_embeddings = true,
  }, { seed = recipe.seed })
  tok:release()

  local m = cai.model.load(model_dir, { dtype = "fp32" })
  local data = {}
  for i, line in ipairs(lines) do data[i] = { prompt = "", response = line } end
  local metrics = cai.train.sft{
    model = m, data = data, out = tmp .. "/pretrain", full = true, seed = recipe.seed,
    max_steps = recipe.max_steps, batch_size = recipe.batch_size, learning_rate = recipe.learning_rate,
    warmup_ratio = recipe.warmup_ratio, schedule = "cosine", weight_decay = 0.01, logging_steps = 50,
    resume = false,
  }
  cai.log.info(string.format("tiny model pretrained: %d steps, final loss %.3f", metrics.steps or 0,
    metrics.loss or 0 / 0))
  publish(m, tmp, dir)
end

-- dir (a built model), made by build_fn() when it is not there yet.
local function cached(root, dir, build_fn)
  if not exists(dir .. "/config.json") then
    os.execute("mkdir -p " .. shell_quote(root))
    -- One builder at a time: a second process (two tests on a fresh cache)
    -- waits for the first one's model instead of building it again. The lock
    -- is the run lock of <dir>.build (a flock, released when its holder exits).
    local waiting = false
    while true do
      local locked, err = pcall(require("cai._run").lock, dir .. ".build")
      if locked or exists(dir .. "/config.json") then break end
      if not tostring(err):find("another run is using", 1, true) then error("cai.tiny: " .. tostring(err), 2) end
      if not waiting then
        cai.log.info("cai.tiny: waiting for another process building " .. dir .. " (" .. tostring(err):match("pid [^,]*")
          .. ")")
        waiting = true
      end
      os.execute("sleep 1")
    end
    if not exists(dir .. "/config.json") then
      -- Half-built models of killed processes (tiny-*.tmp.PID) go; a live builder's stay.
      require("cai.run").clean_temporaries(root, { recursive = false })
      build_fn()
    end
  end
  return dir
end

---The directory of the tiny model, built first when it is not cached.
---@param opts table|nil { cache_dir = dir, recipe = { field = value, ... } (overrides, for tests) }
---@return string dir
function tiny.path(opts)
  opts = check("cai.tiny.path", opts, { cache_dir = "string", recipe = "table" })
  local recipe = merged(opts.recipe)
  local root = opts.cache_dir or tiny.cache_root()
  local constitution_text = recipe.cai_lines > 0 and read_file(constitution_path(recipe.constitution)) or nil
  local dir = root .. "/tiny-" .. fingerprint(recipe, constitution_text)
  return cached(root, dir, function() build(dir, recipe) end)
end

-- The helpful-only start (what recipes/cai.lua trains as its stage 1): LoRA
-- SFT of the tiny model on the world's train instructions, every one
-- answered, harmful ones with the world's compliant placeholder; merged.
tiny.HELPFUL = { examples = 400, steps = 300, learning_rate = 2e-3, batch_size = 16, lora_r = 16, lora_alpha = 32 }

local function build_helpful(base, dir, seed)
  local h = tiny.HELPFUL
  local tmp = string.format("%s.tmp.%d", dir, pid())
  os.execute("rm -rf " .. shell_quote(tmp) .. " && mkdir -p " .. shell_quote(tmp))
  cai.log.info("building the tiny helpful-only start into " .. dir .. " (once; cached)")
  local world = cai.world.new{ seed = seed }
  local items = world:instructions(h.examples, { split = "train" })
  local m = cai.model.load(base, { dtype = "fp32" })
  m:add_lora{ r = h.lora_r, alpha = h.lora_alpha, targets = "all-linear", seed = seed }
  cai.train.sft{ model = m, data = cai.cailoop.helpful_only_data(world, items), out = tmp .. "/sft", seed = seed,
    max_steps = h.steps, learning_rate = h.learning_rate, batch_size = h.batch_size, warmup_ratio = 0.05,
    schedule = "cosine", logging_steps = 50, resume = false }
  m:merge_lora()
  publish(m, tmp, dir)
end

---The directory of the tiny model's helpful-only start ("tiny-helpful" to
---cai.model.load), built from tiny.path() first when it is not cached. The
---recipes that critique a model's answers (cai_pipeline, critique_revision)
---answer with it by default and critique with the tiny model itself, which
---learned the constitution's critiques in pretraining.
---@param opts table|nil as tiny.path
---@return string dir
function tiny.helpful_path(opts)
  opts = check("cai.tiny.helpful_path", opts, { cache_dir = "string", recipe = "table" })
  local base = tiny.path(opts)
  local root = opts.cache_dir or tiny.cache_root()
  local seed = merged(opts.recipe).seed
  local h = tiny.HELPFUL
  local key = string.format("%s|%d|%d|%d|%g|%d|%d|%d", base:match("[^/]+$"), seed, h.examples, h.steps, h.learning_rate, h.batch_size,
    h.lora_r, h.lora_alpha)
  local dir = root .. "/tiny-helpful-" .. require("cai._run").hash(key):sub(1, 16)
  return cached(root, dir, function() build_helpful(base, dir, seed) end)
end

---Whether a model name is one of the embedded tiny models ("tiny", "tiny-helpful").
function tiny.is_tiny(name)
  return name == "tiny" or name == "tiny-helpful"
end

return tiny
