-- The generated bad-input matrix for data: JSON Lines broken on one line in
-- many ways, dataset records with fields of the wrong type for every
-- format, training data the trainers must refuse, constitutions with every
-- field missing or of the wrong type, and write faults (a full disk, a path
-- under a file). Each case is an error naming the file and line (or record
-- and field) or the documented behaviour (spec.cases); writers leave the
-- target complete or absent.
local cai = require "cai"
local spec = require "spec"

local root = spec.tmpdir()
local function write(path, data) spec.write(path, data) return path end
local function sh(cmd) return os.execute(cmd) == 0 end
local E = spec.escape

local files = 0
local function file(text, ext)
  files = files + 1
  return write(root .. "/f" .. files .. (ext or ".jsonl"), text)
end

spec.describe("JSON Lines", function()
  spec.it("a bad second line is named by file and line", function()
    local first, third = '{"text": "fine"}\n', '{"text": "also fine"}\n'
    local BAD = {
      { "byte 0xFF", '{"text": "a\255b"}' }, { "overlong encoding", '{"text": "\192\128"}' },
      { "UTF-16 surrogate as UTF-8", '{"text": "\237\160\128"}' }, { "cut multi-byte", '{"text": "\226\130"}' },
      { "continuation byte alone", '{"text": "\128"}' }, { "5-byte sequence", '{"text": "\248\136\128\128\128"}' },
      { "truncated object", '{"text": "abc' }, { "truncated after key", '{"text":' }, { "only a brace", "{" },
      { "NaN", '{"x": NaN}' }, { "Infinity", '{"x": Infinity}' }, { "single quotes", "{'text': 'a'}" },
      { "trailing comma", '{"text": "a",}' }, { "unquoted key", '{text: "a"}' }, { "comment", '{"text": "a"} // c' },
      { "two objects", '{"text": "a"}{"text": "b"}' }, { "raw control character", '{"text": "a\1b"}' },
      { "raw tab in a string", '{"text": "a\tb"}' }, { "bad escape", '{"text": "\\x41"}' },
      { "short unicode escape", '{"text": "\\u12"}' }, { "lone surrogate escape", '{"text": "\\ud800"}' },
      { "number overflow", '{"x": 1e400}' }, { "leading zero", '{"x": 01}' }, { "minus alone", '{"x": -}' },
      { "nested 50000 deep", string.rep("[", 50000) .. string.rep("]", 50000) },
      { "nested 600 deep in an object", '{"a":' .. string.rep("[", 600) .. string.rep("]", 600) .. "}" },
      { "unclosed nesting", string.rep('{"a":', 20000) }, { "NUL byte", '{"text": "a"}\0' },
      { "garbage", "\0\1\2\3\4" }, { "a bare word", "hello" },
    }
    local cases = {}
    for _, b in ipairs(BAD) do
      cases[#cases + 1] = { b[1], function()
        local path = file(first .. b[2] .. "\n" .. third)
        return cai.jsonl.read(path)
      end, "f%d+%.jsonl:2: " }
    end
    -- what is fine
    local GOOD = {
      { "CRLF line ends", '{"text": "a"}\r\n{"text": "b"}\r\n', 2 }, { "no final newline", '{"text": "a"}', 1 },
      { "blank lines", '\n{"text": "a"}\n\n   \n{"text": "b"}\n', 2 }, { "escaped surrogate pair", '{"text": "\\ud83d\\ude00"}\n', 1 },
      { "escaped NUL", '{"text": "a\\u0000b"}\n', 1 }, { "empty file", "", 0 },
      { "500 levels", string.rep("[", 500) .. string.rep("]", 500) .. "\n", 1 },
      { "a 10 MB string", '{"text": "' .. string.rep("x", 10 * 1024 * 1024) .. '"}\n', 1 },
      { "10000 keys", "{" .. (function() local t = {} for i = 1, 10000 do t[i] = '"k' .. i .. '":' .. i end return table.concat(t, ",") end)() .. "}\n", 1 },
    }
    for _, g in ipairs(GOOD) do
      cases[#cases + 1] = { g[1], function() return cai.jsonl.read(file(g[2])) end, "ok", function(records)
        if #records ~= g[3] then return "expected " .. g[3] .. " records, got " .. #records end
      end }
    end
    cases[#cases + 1] = { "a BOM", function() return cai.jsonl.read(file("\239\187\191" .. first)) end, function(ok, err)
      if not ok and not tostring(err):find("f%d+%.jsonl:1") then return tostring(err) end end }
    cases[#cases + 1] = { "a directory", function() return cai.jsonl.read(root) end, E(root) .. ": is a directory" }
    cases[#cases + 1] = { "a missing file", function() return cai.jsonl.read(root .. "/nosuch.jsonl") end, "nosuch%.jsonl: cannot open" }
    cases[#cases + 1] = { "cai.json.decode of a bad text", function() return cai.json.decode('{"a": [1, 2') end, "cai.json.decode" }
    cases[#cases + 1] = { "cai.json.decode nested deep", function() return cai.json.decode(string.rep("[", 100000)) end, "nested deeper" }
    cases[#cases + 1] = { "cai.json.decode not UTF-8", function() return cai.json.decode('"\255"') end, "cai.json.decode" }
    spec.cases("JSON Lines", cases)
  end)
end)

spec.describe("datasets", function()
  spec.it("records with fields of the wrong type, in every format", function()
    local FORMATS = {
      text = { text = "a b c" },
      prompt_completion = { prompt = "Q", completion = " A" },
      preference = { prompt = "Q", chosen = " yes", rejected = " no" },
      implicit = { chosen = "Q yes", rejected = "Q no" },
      alpaca = { instruction = "Do it", input = "", output = "Done" },
      messages = { messages = { { role = "user", content = "hi" }, { role = "assistant", content = "hello" } } },
      conv_preference = { prompt = { { role = "user", content = "hi" } }, chosen = { { role = "assistant", content = "a" } },
        rejected = { { role = "assistant", content = "b" } } },
    }
    local WRONG = { { "a number", 5 }, { "true", true }, { "an object", { a = 1 } }, { "a list of numbers", { 1, 2 } },
      { "null", cai.json.null } }
    local cases = {}
    local names = {}
    for n in pairs(FORMATS) do names[#names + 1] = n end
    table.sort(names)
    for _, fmt in ipairs(names) do
      local good = FORMATS[fmt]
      local fields = {}
      for k in pairs(good) do fields[#fields + 1] = k end
      table.sort(fields)
      for _, field in ipairs(fields) do
        for _, w in ipairs(WRONG) do
          cases[#cases + 1] = { fmt .. ": " .. field .. " = " .. w[1], function()
            local bad = {}
            for k, v in pairs(good) do bad[k] = v end
            bad[field] = w[2]
            local path = file(cai.json.encode(good) .. "\n" .. cai.json.encode(bad) .. "\n")
            return cai.data.load(path)
          end, function(ok, err)
            if ok and fmt == "alpaca" and field == "input" and w[2] == cai.json.null then return nil end  -- no input
            if ok then return "the record loaded" end
            if not tostring(err):find("f%d+%.jsonl:2") then return "the error does not name line 2: " .. tostring(err) end
          end }
        end
      end
    end
    -- message lists
    local MESSAGES = {
      { "a message without role", { { content = "hi" } } }, { "a message without content", { { role = "user" } } },
      { "role a number", { { role = 1, content = "hi" } } }, { "content a number", { { role = "user", content = 5 } } },
      { "a message a string", { "hi" } }, { "an empty list", {} }, { "content an object", { { role = "user", content = { a = 1 } } } },
    }
    for _, m in ipairs(MESSAGES) do
      cases[#cases + 1] = { "messages: " .. m[1], function()
        local path = file(cai.json.encode(FORMATS.messages) .. "\n" .. cai.json.encode({ messages = m[2] }) .. "\n")
        return cai.data.load(path)
      end, "f%d+%.jsonl:2" }
    end
    local WHOLE = { { "no records", "" }, { "a list of numbers", "[1, 2]" }, { "records of two formats", '{"text": "a"}\n{"prompt": "Q", "completion": "A"}\n' },
      { "a record that is a list", '{"text": "a"}\n[1, 2]\n' }, { "a record that is a string", '{"text": "a"}\n"text"\n' },
      { "no known fields", '{"question": "Q", "answer": "A"}\n' } }
    for _, w in ipairs(WHOLE) do
      cases[#cases + 1] = { "file: " .. w[1], function() return cai.data.load(file(w[2])) end, "f%d+%.jsonl" }
    end
    cases[#cases + 1] = { "columns naming a missing field", function()
      return cai.data.load(file('{"q": "Q", "a": "A"}\n'), { columns = { prompt = "q", completion = "zz" } })
    end, "zz" }
    cases[#cases + 1] = { "columns a list", function() return cai.data.load(file('{"text": "a"}\n'), { columns = { "text" } }) end, "columns" }
    cases[#cases + 1] = { "from_records with a hole", function() return cai.data.from_records({ { text = "a" }, nil, { text = "b" } }) end,
      function(ok, err) if not ok and not tostring(err):find("hole") and not tostring(err):find("records") then return tostring(err) end end }
    cases[#cases + 1] = { "from_records of strings", function() return cai.data.from_records({ "a", "b" }) end, "data%[1%]: expected an object" }
    spec.cases("datasets", cases)
  end)

  spec.it("training data the trainers refuse before training", function()
    local dir = spec.random_model(root .. "/model", { seed = 2, config = { max_position_embeddings = 64 } })
    local m = cai.model.load(dir, { dtype = "fp32" })
    m:add_lora{ r = 2, alpha = 4, seed = 1 }
    local runs = 0
    local function train(kind, records, extra)  -- one step of cai.train.sft or .dpo on records
      runs = runs + 1
      local opts = { model = m, out = root .. "/" .. kind .. runs, max_steps = 1, progress = false }
      opts[kind == "sft" and "data" or "pairs"] = records
      for k, v in pairs(extra or {}) do opts[k] = v end
      return cai.train[kind](opts)
    end
    local function sft(data, extra) return train("sft", data, extra) end
    local function dpo(pairs_, extra) return train("dpo", pairs_, extra) end
    local good = { prompt = "The cat", response = " sat." }
    local cases = {
      { "sft: no records", function() return sft({}) end, "cai%.train%.sft" },
      { "sft: a record a string", function() return sft({ good, "text" }) end, "data%[2%]" },
      { "sft: response a number", function() return sft({ good, { prompt = "a", response = 5 } }) end, "data%[2%]" },
      { "sft: prompt a table", function() return sft({ good, { prompt = {}, response = "x" } }) end, "data%[2%]" },
      { "sft: empty response, no EOS", function() return sft({ good, { prompt = "a", response = "" } }, { eos = false }) end, "data%[2%]" },
      { "sft: a record longer than the context", function() return sft({ good, { prompt = "a", response = string.rep(" word", 100) } }) end,
        "data%[2%] is %d+ tokens" },
      { "sft: a 10 MB record", function() return sft({ good, { prompt = "a", response = string.rep("x", 10 * 1024 * 1024) } }) end,
        "data%[2%]" },
      { "sft: data a missing file", function() return sft(root .. "/nosuch.jsonl") end, "nosuch%.jsonl" },
      { "sft: data a file with a bad line", function() return sft(file('{"prompt": "a", "completion": " b"}\n{"prompt": \n')) end,
        "f%d+%.jsonl:2" },
      { "sft: data a preference file", function() return sft(file('{"prompt": "a", "chosen": " b", "rejected": " c"}\n')) end,
        "f%d+%.jsonl" },
      { "dpo: no pairs", function() return dpo({}) end, "cai%.train%.dpo" },
      { "dpo: chosen a number", function() return dpo({ { prompt = "Q", chosen = 5, rejected = " no" } }) end, "pairs%[1%]" },
      { "dpo: rejected missing", function() return dpo({ { prompt = "Q", chosen = " yes" } }) end, "pairs%[1%]" },
      { "dpo: chosen equals rejected", function() return dpo({ { prompt = "Q", chosen = " x", rejected = " x" } }) end,
        function(ok, err) if not ok and not tostring(err):find("pairs%[1%]") then return tostring(err) end end },
      { "dpo: a pair longer than the context", function() return dpo({ { prompt = "Q", chosen = string.rep(" yes", 80), rejected = " no" } }) end,
        "pairs%[1%]" },
      { "dpo: pairs a text file", function() return dpo(file('{"text": "a"}\n')) end, "f%d+%.jsonl" },
    }
    spec.cases("training data", cases)
    m:release()
  end)
end)

spec.describe("constitutions", function()
  spec.it("every field missing or of the wrong type", function()
    -- JSON is YAML: each variant is written in flow style.
    local base = {
      name = "test", description = "A test constitution.",
      principles = {
        { id = "helpful", title = "Helpful", critique = "Find unhelpful parts.", revision = "Make it helpful.",
          tags = { "helpfulness" }, weight = 2 },
        { id = "safe", critique = "Find unsafe parts.", revision = "Make it safe." },
      },
      negatives = { off_topic = 15 },
      templates = { instruction = "Q: {instruction}\nA:" },
    }
    local function copy(v)
      if type(v) ~= "table" then return v end
      local out = {}
      for k, x in pairs(v) do out[k] = copy(x) end
      return out
    end
    local function load_variant(edit)
      local c = copy(base)
      edit(c)
      return cai.constitution.load(file(cai.json.encode(c), ".yaml"))
    end
    local cases = { { "the base loads", function() return load_variant(function() end) end, "ok" } }
    -- values of these that are valid after all
    local VALID = { ["negatives = a mapping"] = true, ["tags = a list"] = true, ["weight = a number"] = true }
    local WRONG = { { "a number", 5 }, { "a list", { "x" } }, { "a mapping", { a = 1 } }, { "true", true }, { "null", cai.json.null } }
    for _, key in ipairs({ "name", "description", "principles", "negatives", "templates" }) do
      for _, w in ipairs(WRONG) do
        local optional = key ~= "name" and key ~= "principles"
        if not VALID[key .. " = " .. w[1]] then cases[#cases + 1] = { key .. " = " .. w[1], function() return load_variant(function(c) c[key] = w[2] end) end,
          function(ok, err)
            if ok and optional and w[2] == cai.json.null then return nil end
            if ok then return "loaded" end
            if not tostring(err):find("f%d+%.yaml") or not tostring(err):find(key) then return "does not name the file and " .. key .. ": " .. tostring(err) end
          end } end
      end
    end
    for _, field in ipairs({ "id", "title", "critique", "revision", "tags", "weight" }) do
      for _, w in ipairs(WRONG) do
        if not VALID[field .. " = " .. w[1]] then cases[#cases + 1] = { "principles[1]." .. field .. " = " .. w[1], function()
          return load_variant(function(c) c.principles[1][field] = w[2] end)
        end, function(ok, err)
          local optional = field == "title" or field == "tags" or field == "weight"
          if ok and optional and w[2] == cai.json.null then return nil end
          if ok then return "loaded" end
          if not tostring(err):find("f%d+%.yaml") or not tostring(err):find(field) then return "does not name the file and " .. field .. ": " .. tostring(err) end
        end } end
      end
      cases[#cases + 1] = { "principles[2]." .. field .. " missing", function()
        return load_variant(function(c) c.principles[2][field] = nil end)
      end, function(ok, err)
        local required = field == "id" or field == "critique" or field == "revision"
        if ok and not required then return nil end
        if ok then return "loaded without " .. field end
        if not tostring(err):find(field) then return tostring(err) end
      end }
    end
    local OTHER = {
      { "no principles", function(c) c.principles = {} end, "principles" },
      { "duplicate ids", function(c) c.principles[2].id = "helpful" end, "helpful" },
      { "an unknown key", function(c) c.principles[1].critque = "x" end, "critque" },
      { "an unknown root key", function(c) c.principels = {} end, "principels" },
      { "negative weight", function(c) c.principles[1].weight = -1 end, "weight" },
      { "weight a string", function(c) c.principles[1].weight = "heavy" end, "weight" },
      { "empty critique", function(c) c.principles[1].critique = "" end, "critique" },
      { "id with spaces", function(c) c.principles[1].id = "two words" end, "id" },
      { "negative weight for a negative", function(c) c.negatives.off_topic = -3 end, "off_topic" },
      { "a negative of the wrong type", function(c) c.negatives.off_topic = "often" end, "off_topic" },
      { "a template a number", function(c) c.templates.instruction = 5 end, "instruction" },
      { "extends a missing file", function(c) c.extends = "nosuch.yaml" end, "nosuch%.yaml" },
      { "extends a number", function(c) c.extends = 5 end, "extends" },
    }
    for _, o in ipairs(OTHER) do
      cases[#cases + 1] = { o[1], function() return load_variant(o[2]) end, spec.all_of("f%d+%.yaml", o[3]) }
    end
    local TEXTS = {
      { "empty", "" }, { "only a comment", "# nothing\n" }, { "a list", "- a\n- b\n" }, { "a scalar", "hello\n" },
      { "a tab indent", "name: x\nprinciples:\n\t- id: a\n" }, { "an unclosed quote", 'name: "x\nprinciples: []\n' },
      { "an unclosed flow", "name: [x\n" }, { "bad indentation", "name: x\n  principles: 1\n bad: 2\n" },
      { "binary", "\0\1\2\255\254" }, { "not UTF-8", "name: caf\233\nprinciples: []\n" },
      { "nested deep", string.rep("[", 100000) }, { "an alias bomb", "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n" },
      { "an undefined alias", "name: *nope\n" }, { "two documents", "name: a\n---\nname: b\n" },
      { "a duplicate key", "name: a\nname: b\nprinciples: []\n" },
    }
    for _, t in ipairs(TEXTS) do
      cases[#cases + 1] = { "file " .. t[1], function() return cai.constitution.load(file(t[2], ".yaml")) end, "f%d+%.yaml" }
    end
    cases[#cases + 1] = { "a directory", function() return cai.constitution.load(root) end, E(root) }
    cases[#cases + 1] = { "a missing file", function() return cai.constitution.load(root .. "/nosuch.yaml") end, "nosuch%.yaml" }
    spec.cases("constitutions", cases)
  end)
end)

spec.describe("write faults", function()
  spec.it("a full disk, a path under a file, a directory in the way: named, nothing half-written", function()
    local afile = write(root .. "/afile", "x")
    local adir = root .. "/adir"
    sh("mkdir -p " .. adir)
    local WRITERS = {
      { "cai.write_file", function(p) cai.write_file(p, string.rep("x", 100000)) end },
      { "cai.jsonl.write", function(p) cai.jsonl.write(p, { { text = string.rep("x", 100000) } }) end },
      { "cai.json.write", function(p) cai.json.write(p, { text = string.rep("x", 100000) }) end },
      { "cai.jsonl.append", function(p) cai.jsonl.append(p, { text = string.rep("x", 100000) }) end },
    }
    local cases = {}
    -- A full disk is a private copy of /dev/full (a device node made here), so
    -- that a writer that wrongly renamed a file over it could only harm the copy;
    -- a null device must stay a device after a write.
    local full, null = root .. "/full", root .. "/null"
    local devices = sh("mknod " .. full .. " c 1 7 2>/dev/null") and sh("mknod " .. null .. " c 1 3 2>/dev/null")
    if not devices then io.write("  note: cannot make device nodes here; the full-disk cases are skipped\n") end
    for _, w in ipairs(WRITERS) do
      if devices then
        cases[#cases + 1] = { w[1] .. " on a full disk", function() w[2](full) end, E(full) .. ": .*No space left on device" }
        cases[#cases + 1] = { w[1] .. " to a null device", function()
          w[2](null)
          if not sh("test -c " .. null) then error("the device was replaced by a file") end
        end, "ok" }
      end
      cases[#cases + 1] = { w[1] .. " under a file", function() w[2](afile .. "/out.jsonl") end, E(afile) }
      cases[#cases + 1] = { w[1] .. " onto a directory", function() w[2](adir) end, E(adir) }
      cases[#cases + 1] = { w[1] .. " to an empty path", function() w[2]("") end, "empty" }
    end
    -- a model or an adapter saved where it cannot be
    local dir = spec.random_model(root .. "/model", { seed = 3 })
    local m = cai.model.load(dir, { dtype = "fp32" })
    m:add_lora{ r = 2, alpha = 4, seed = 1 }
    cases[#cases + 1] = { "m:save under a file", function() m:save(afile .. "/m") end, E(afile) }
    cases[#cases + 1] = { "m:save_lora under a file", function() m:save_lora(afile .. "/a") end, E(afile) }
    if devices then
      cases[#cases + 1] = { "logits:save on a full disk", function() m:logits({ { 1, 2, 3 } }):save(full) end, E(full) }
    end
    cases[#cases + 1] = { "cai.model.random under a file", function()
      cai.model.random(afile .. "/r", { model_type = "llama", vocab_size = 16, hidden_size = 8, intermediate_size = 8,
        num_hidden_layers = 1, num_attention_heads = 2 })
    end, E(afile) }
    cases[#cases + 1] = { "sft out= under a file", function()
      cai.train.sft{ model = m, data = { { prompt = "a", response = " b" } }, out = afile .. "/run", max_steps = 1, progress = false }
    end, E(afile) }
    spec.cases("write faults", cases)
    -- nothing was left beside the targets
    local handle = io.popen("find " .. root .. " -name '*.tmp.*'")
    local left = handle:read("*a")
    handle:close()
    spec.eq(left, "", "no temporary files left behind")
    m:release()
  end)
end)

spec.run()
