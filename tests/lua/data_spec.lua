-- cai.data: TRL's dataset formats, Alpaca and cairun's own records from
-- JSONL and JSON-array files; the format comes from the first record, every
-- record must share it, and a record that fits none names file, line and fields.
local cai = require "cai"
local spec = require "spec"

local root = spec.tmpdir()

local function write(name, text)
  local path = root .. "/" .. name
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  return path
end

local user = function(s) return { role = "user", content = s } end
local assistant = function(s) return { role = "assistant", content = s } end

spec.describe("cai.data.load", function()
  spec.it("reads standard language modeling, prompt-only, prompt-completion and preference files", function()
    local ds = cai.data.load(write("lm.jsonl", '{"text": "The sky is blue."}\n\n{"text": "Grass is green."}\n'))
    spec.eq(ds.type, "language_modeling")
    spec.eq(ds.conversational, false)
    spec.eq(ds.records, { { text = "The sky is blue." }, { text = "Grass is green." } })
    spec.eq(ds.where[2], root .. "/lm.jsonl:3")

    ds = cai.data.load(write("po.jsonl", '{"prompt": "The sky is"}\n'))
    spec.eq({ ds.type, ds.records[1].prompt }, { "prompt_only", "The sky is" })

    ds = cai.data.load(write("pc.jsonl", '{"prompt": "The sky is", "completion": " blue.", "id": 7}\n'))
    spec.eq(ds.type, "prompt_completion")
    spec.eq(ds.records[1], { prompt = "The sky is", completion = " blue." })
    spec.eq(ds.raw, nil, "the records as read only when asked for")
    ds = cai.data.load(root .. "/pc.jsonl", { raw = true })
    spec.eq(ds.raw, { { prompt = "The sky is", completion = " blue.", id = 7 } })

    ds = cai.data.load(write("pref.jsonl", '{"prompt": "The sky is", "chosen": " blue.", "rejected": " green."}\n'))
    spec.eq({ ds.type, ds.implicit_prompt }, { "preference", false })
    spec.eq(ds.records[1], { prompt = "The sky is", chosen = " blue.", rejected = " green." })
  end)

  spec.it("reads conversational files", function()
    local ds = cai.data.load(write("conv.jsonl",
      '{"messages": [{"role": "user", "content": "What color is the sky?"}, {"role": "assistant", "content": "Blue."}]}\n'))
    spec.eq({ ds.type, ds.conversational }, { "language_modeling", true })
    spec.eq(ds.records[1].messages, { user("What color is the sky?"), assistant("Blue.") })

    ds = cai.data.load(write("convpc.jsonl",
      '{"prompt": [{"role": "user", "content": "Sky?"}], "completion": [{"role": "assistant", "content": "Blue."}]}\n'))
    spec.eq({ ds.type, ds.conversational }, { "prompt_completion", true })
    spec.eq(ds.records[1], { prompt = { user("Sky?") }, completion = { assistant("Blue.") } })

    ds = cai.data.load(write("convpref.jsonl", '{"prompt": [{"role": "user", "content": "Sky?"}], '
      .. '"chosen": [{"role": "assistant", "content": "Blue."}], "rejected": [{"role": "assistant", "content": "Green."}]}\n'))
    spec.eq({ ds.type, ds.conversational, ds.implicit_prompt }, { "preference", true, false })
    spec.eq(ds.records[1].rejected, { assistant("Green.") })
  end)

  spec.it("extracts an implicit prompt as TRL does (strings back off a trailing space; messages by message)", function()
    local ds = cai.data.load(write("impl.jsonl",
      '{"chosen": "The sky is blue.", "rejected": "The sky is green."}\n'))
    spec.eq({ ds.type, ds.implicit_prompt }, { "preference", true })
    spec.eq(ds.records[1], { prompt = "The sky is", chosen = " blue.", rejected = " green." })

    ds = cai.data.load(write("implconv.json", cai.json.encode({
      { chosen = { user("Sky?"), assistant("Blue.") }, rejected = { user("Sky?"), assistant("Green.") } },
      { chosen = { { role = "system", content = "Be brief." }, user("Hi"), assistant("Hello.") },
        rejected = { { role = "system", content = "Be brief." }, user("Hi"), assistant("Go away.") } },
    })))
    spec.eq({ ds.type, ds.conversational, ds.implicit_prompt }, { "preference", true, true })
    spec.eq(ds.records[1], { prompt = { user("Sky?") }, chosen = { assistant("Blue.") }, rejected = { assistant("Green.") } })
    spec.eq(#ds.records[2].prompt, 2)
    spec.eq(ds.records[2].chosen, { assistant("Hello.") })

    spec.raises(function()
      cai.data.load(write("implbad.jsonl", '{"chosen": "abc", "rejected": "abcdef"}\n'))
    end, "implbad.jsonl:1: preference record: one of chosen and rejected is the start of the other", true)
    spec.raises(function()
      cai.data.load(write("implnone.jsonl", '{"chosen": "yes", "rejected": "no"}\n'))
    end, "share no start", true)
  end)

  spec.it("reads Alpaca records (input appended to the instruction when present)", function()
    local ds = cai.data.load(write("alpaca.json", cai.json.encode({
      { instruction = "Give a color.", input = "", output = "Blue." },
      { instruction = "Translate.", input = "chat", output = "cat" },
      { instruction = "Count.", output = "1 2 3" },
    })))
    spec.eq({ ds.type, ds.source, ds.conversational }, { "prompt_completion", "alpaca", false })
    spec.eq(ds.records[1], { prompt = "Give a color.", completion = "Blue." })
    spec.eq(ds.records[2], { prompt = "Translate.\n\nchat", completion = "cat" })
    spec.eq(ds.records[3], { prompt = "Count.", completion = "1 2 3" })
    spec.eq(ds.where[2], root .. "/alpaca.json: record 2")
  end)

  spec.it("reads cairun's instruction/response records", function()
    local ds = cai.data.load(write("cai.jsonl", '{"instruction": "Hi", "response": "Hello."}\n'))
    spec.eq({ ds.type, ds.source }, { "prompt_completion", "cai" })
    spec.eq(ds.records[1], { prompt = "Hi", completion = "Hello." })
  end)

  spec.it("maps columns to the names of the formats", function()
    local ds = cai.data.load(write("mapped.jsonl", '{"question": "2+2?", "answer": "4", "prompt": "ignored"}\n'),
      { columns = { prompt = "question", completion = "answer" } })
    spec.eq(ds.type, "prompt_completion")
    spec.eq(ds.records[1], { prompt = "2+2?", completion = "4" })
    spec.raises(function()
      cai.data.load(root .. "/mapped.jsonl", { columns = { prompt = "query" } })
    end, 'columns.prompt = "query", but the record has no field "query" (fields found: answer, prompt, question)', true)
    spec.raises(function()
      cai.data.load(root .. "/mapped.jsonl", { columns = { question = "prompt" } })
    end, "option 'columns' has an unknown field 'question'", true)
  end)

  spec.it("names file, line and fields of a record that fits no format", function()
    local path = write("bad.jsonl", '{"prompt": "a", "completion": "b"}\n\n{"question": "x", "answer": "y"}\n')
    spec.raises(function() cai.data.load(path) end,
      "bad.jsonl:3: fits no dataset format (fields found: answer, question); expected one of: text | messages", true)
    spec.raises(function()
      cai.data.load(write("bad.json", '[{"foo": 1}]'))
    end, "bad.json: record 1: fits no dataset format (fields found: foo)", true)
    spec.raises(function()
      cai.data.load(write("notjson.jsonl", '{"text": "a"}\n{"text": \n'))
    end, "notjson.jsonl:2: not valid JSON", true)
  end)

  spec.it("requires every record to have the first record's format", function()
    local path = write("mixed.jsonl", '{"prompt": "a", "completion": "b"}\n{"text": "c"}\n')
    spec.raises(function() cai.data.load(path) end,
      "mixed.jsonl:2: this record is language-modeling, standard (fields found: text) but the first record ("
      .. path .. ":1) is prompt-completion, standard", true)
    path = write("mixedconv.jsonl", '{"prompt": "a", "completion": "b"}\n'
      .. '{"prompt": [{"role": "user", "content": "a"}], "completion": [{"role": "assistant", "content": "b"}]}\n')
    spec.raises(function() cai.data.load(path) end, "mixedconv.jsonl:2: this record is prompt-completion, conversational", true)
  end)

  spec.it("checks field types and messages", function()
    spec.raises(function()
      cai.data.load(write("num.jsonl", '{"prompt": "a", "completion": 3}\n'))
    end, 'num.jsonl:1: prompt-completion record: field "completion" must be a string or a list of messages, got number', true)
    spec.raises(function()
      cai.data.load(write("mix.jsonl", '{"prompt": [{"role": "user", "content": "a"}], "completion": "b"}\n'))
    end, 'field "completion" is a string but the record\'s other fields are message lists', true)
    spec.raises(function()
      cai.data.load(write("norole.jsonl", '{"messages": [{"content": "a"}]}\n'))
    end, 'norole.jsonl:1: language-modeling record: field "messages": message 1 has no "role" string', true)
    spec.raises(function()
      cai.data.load(write("parts.jsonl", '{"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}]}]}\n'))
    end, "content parts are not supported", true)
    spec.raises(function() cai.data.load(write("empty.jsonl", "\n\n")) end, "empty.jsonl: no records", true)
    spec.raises(function() cai.data.load(root .. "/missing.jsonl") end, "cannot open", true)
  end)

  spec.it("restricts the accepted types when asked", function()
    spec.raises(function()
      cai.data.load(root .. "/lm.jsonl", { types = { "preference" } })
    end, "the data is language-modeling, standard, but " .. root .. "/lm.jsonl takes preference", true)
  end)

  spec.it("normalizes records already in memory, naming data[i]", function()
    local ds = cai.data.from_records({ { prompt = "a", response = "b" } })
    spec.eq(ds.records[1], { prompt = "a", completion = "b" })
    spec.raises(function() cai.data.from_records({ { prompt = "a" }, { what = 1 } }, { name = "pairs" }) end,
      "pairs[2]: fits no dataset format (fields found: what)", true)
  end)
end)

spec.run()
