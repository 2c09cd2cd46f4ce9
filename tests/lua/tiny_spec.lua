local cai = require "cai"
local spec = require "spec"

local cache = spec.tmpdir()
local small = { corpus_lines = 200, cai_lines = 50, max_steps = 4, vocab_size = 400, layers = 1, hidden_size = 32,
                intermediate_size = 64 }

-- Each file in dir with its inode, size and modification time (ns): a file
-- written again (atomically, under a new inode) or touched shows up changed.
local function files_of(dir)
  local out = {}
  local p = io.popen("stat -c '%n %i %s %.9Y' " .. dir .. "/*")
  for line in p:lines() do out[#out + 1] = line end
  p:close()
  table.sort(out)
  return out
end

spec.describe("cai.tiny", function()
  spec.it("builds a loadable HF directory once and then reuses it", function()
    local dir = cai.tiny.path{ cache_dir = cache, recipe = small }
    spec.truthy(io.open(dir .. "/config.json"), "config.json written")
    spec.truthy(io.open(dir .. "/model.safetensors"), "weights written")
    spec.truthy(io.open(dir .. "/tokenizer.model"), "tokenizer copied")
    local before = files_of(dir)
    spec.eq(cai.tiny.path{ cache_dir = cache, recipe = small }, dir)
    spec.eq(files_of(dir), before, "the second call uses the cache: no file rewritten")
    local m = cai.model.load(dir)
    spec.eq(m.config.model_type, "llama")
    spec.eq(m.config.num_hidden_layers, 1)
    local out = m:generate({ "The cat" }, { max_new_tokens = 3 })
    spec.truthy(#out[1].tokens >= 1)
    m:release()
    local leftovers = io.popen("ls " .. cache):read("*a")
    spec.truthy(not leftovers:find("tmp"), "no temporary directory left: " .. leftovers)
  end)
  spec.it("is deterministic and keyed by its recipe", function()
    local a = cai.tiny.path{ cache_dir = cache, recipe = small }
    local changed = {}
    for k, v in pairs(small) do changed[k] = v end
    changed.seed = 7
    local b = cai.tiny.path{ cache_dir = cache, recipe = changed }
    spec.truthy(a ~= b, "a new recipe gets a new directory")
    local other = spec.tmpdir()
    local c = cai.tiny.path{ cache_dir = other, recipe = small }
    spec.truthy(spec.read(a .. "/model.safetensors") == spec.read(c .. "/model.safetensors"), "same recipe, same weights")
    os.execute("rm -rf " .. other)
  end)
  spec.it("an edited constitution names another model (its demonstrations change)", function()
    local a = cai.tiny.path{ cache_dir = cache, recipe = small }
    local dir = spec.tmpdir()
    local src = assert(io.open("constitutions/tiny_world.yaml")):read("*a")
    local f = assert(io.open(dir .. "/c.yaml", "w"))
    f:write((src:gsub("weight: 2", "weight: 5", 1)))
    f:close()
    local edited = {}
    for k, v in pairs(small) do edited[k] = v end
    edited.constitution = dir .. "/c.yaml"
    local b = cai.tiny.path{ cache_dir = cache, recipe = edited }
    spec.truthy(a ~= b, "another directory for the edited constitution")
    edited.constitution = dir .. "/missing.yaml"
    spec.raises(function() cai.tiny.path{ cache_dir = cache, recipe = edited } end, "missing.yaml does not exist", true)
    os.execute("rm -rf " .. dir)
  end)
  spec.it("two processes on a fresh cache build the model once", function()
    local f = assert(io.open("/proc/self/stat"))
    local exe = io.popen("readlink -f /proc/" .. math.floor(f:read("*n")) .. "/exe"):read("*l")
    f:close()
    local root = spec.tmpdir()
    local recipe = {}
    for k, v in pairs(small) do recipe[k] = v end
    recipe.seed = 11  -- not built by the other tests
    local code = string.format("print(cai.tiny.path{ cache_dir = %q, recipe = cai.json.decode(%q) })", root,
      cai.json.encode(recipe))
    local cmd = {}
    for i = 1, 2 do
      cmd[i] = string.format("CAI_LOG=info %s -e '%s' > %s/out%d.log 2>&1", exe, code, root, i)
    end
    spec.truthy(os.execute("(" .. cmd[1] .. ") & (" .. cmd[2] .. ") & wait") == 0)
    local logs = spec.read(root .. "/out1.log") .. spec.read(root .. "/out2.log")
    local _, builds = logs:gsub("building the tiny default model", "")
    spec.eq(builds, 1, "one build:\n" .. logs)
    spec.truthy(logs:find("waiting for another process building", 1, true), logs)
    local dirs = {}
    for line in logs:gmatch("[^\n]+") do if line:find("^/") then dirs[#dirs + 1] = line end end
    spec.eq(#dirs, 2, logs)
    spec.eq(dirs[1], dirs[2])
    os.execute("rm -rf " .. root)
  end)
  spec.it("builds the helpful-only start once, from the tiny model, for \"tiny-helpful\"", function()
    local base = cai.tiny.path{ cache_dir = cache, recipe = small }
    local dir = cai.tiny.helpful_path{ cache_dir = cache, recipe = small }
    spec.truthy(dir ~= base and dir:find("/tiny%-helpful%-") ~= nil, dir)
    spec.truthy(io.open(dir .. "/tokenizer.model"), "tokenizer copied")
    local before = files_of(dir)
    spec.eq(cai.tiny.helpful_path{ cache_dir = cache, recipe = small }, dir)
    spec.eq(files_of(dir), before, "the second call uses the cache")
    spec.truthy(spec.read(dir .. "/model.safetensors") ~= spec.read(base .. "/model.safetensors"), "trained")
    spec.truthy(cai.tiny.is_tiny("tiny") and cai.tiny.is_tiny("tiny-helpful") and not cai.tiny.is_tiny("models/x"))
    local leftovers = io.popen("ls " .. cache):read("*a")
    spec.truthy(not leftovers:find("tmp"), "no temporary directory left: " .. leftovers)
  end)
  spec.it("refuses unknown recipe fields and options", function()
    spec.raises(function() cai.tiny.path{ cache_dir = cache, recipe = { layerz = 2 } } end,
      "cai.tiny.path: recipe: unknown option 'layerz' (did you mean layers?)", true)
    spec.raises(function() cai.tiny.path{ cache_dir = cache, recipe = { layers = "2" } } end,
      "cai.tiny.path: recipe: option 'layers' must be a number, got string", true)
    spec.raises(function() cai.tiny.path{ cachedir = cache } end, "unknown option 'cachedir'", true)
  end)
end)

spec.run()
os.execute("rm -rf " .. cache)
