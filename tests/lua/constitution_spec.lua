-- Constitutions: the shipped files load, malformed ones are refused with the
-- file, line and field named, quickly and without a crash.
local spec = require "spec"
local cai = require "cai"

local D = "tests/data/constitutions/"

local function load_error(name)
  local ok, err = pcall(cai.constitution.load, D .. name)
  spec.truthy(not ok, name .. " should be refused")
  return tostring(err)
end

spec.describe("constitution", function()
  spec.it("loads the shipped constitutions", function()
    local c = cai.constitution.load("constitutions/default.yaml")
    spec.eq(c.name, "default")
    spec.truthy(#c.principles >= 15, "default has at least 15 principles")
    local h = cai.constitution.load("constitutions/harmlessness.yaml")
    spec.eq(#h.principles, 16)
    local s = cai.constitution.load("constitutions/stage1_instruction_following.yaml")
    local mix = s:negative_mix()
    spec.eq(mix, {
      { type = "unwarranted_refusal", weight = 30 }, { type = "format_violation", weight = 25 },
      { type = "incorrect_factual", weight = 20 }, { type = "off_topic", weight = 15 },
      { type = "verbose_vague", weight = 10 },
    })
    spec.eq(s.criteria_order, { "ends_with_end", "proper_structure", "no_rambling", "addresses_instruction",
      "appropriate_length", "no_unwarranted_refusal", "factually_correct", "coherent", "on_topic" })
    spec.eq(s.criteria.coherent.group, "content_quality")
  end)

  spec.it("loads a valid file with the right values, extends and overrides by id", function()
    local c = cai.constitution.load(D .. "valid/child.yaml")
    spec.eq(c.name, "child")
    spec.eq(c.description, "Parent constitution for the extends test.")
    spec.eq(c:ids(), { "helpful", "safe", "honest" })
    local helpful = c:get("helpful")
    spec.eq(helpful.title, "Helpful")
    spec.eq(helpful.weight, 2)
    spec.eq(helpful.tags, { "helpfulness" })
    local safe = c:get("safe")
    spec.eq(safe.critique, "Find dangerous parts.")
    spec.eq(safe.weight, 0.5)
    spec.eq(safe.title, "safe")        -- title defaults to the id
    spec.eq(safe.tags, {})
    local honest = c:get("honest")
    spec.eq(honest.keywords, { "fact", "truth" })
    spec.eq(honest.examples[1], { prompt = "Is the sun a star?", response = "No.", critique = "This is false.",
      revision = "Yes, the Sun is a star." })
    spec.eq(c.negatives.off_topic.weight, 20)                -- child wins
    spec.eq(c.negatives.unwarranted_refusal.templates, { "No." })
    spec.eq(c.negative_order, { "off_topic", "unwarranted_refusal" })
    spec.eq(c.templates.instruction, "Q: {instruction}\nA:")
    spec.eq(c.criteria.on_topic.weight, 2)
    spec.eq(c.criteria.coherent.group, "content")
    spec.truthy(c:has("safe") and not c:has("nope"))
    spec.raises(function() c:get("nope") end, 'no principle with id "nope" %(known: helpful, safe, honest%)')
  end)

  spec.it("refuses malformed files naming file, line and field", function()
    local cases = {
      { "syntax_error.yaml", "syntax_error%.yaml:5:13: end of sequence flow not found" },
      { "missing_revision.yaml", "missing_revision%.yaml:3: principles%[1%]%.revision: missing required field" },
      { "missing_name.yaml", "missing_name%.yaml:1: name: missing required field" },
      { "unknown_key.yaml", "unknown_key%.yaml:5: principles%[1%]%.revison: unknown key; expected one of" },
      { "unknown_root_key.yaml", "unknown_root_key%.yaml:2: principle: unknown key" },
      { "duplicate_id.yaml", 'duplicate_id%.yaml:9: principles%[3%]%.id: duplicate id "a" %(first used by principles%[1%]%)' },
      { "wrong_type_weight.yaml", 'wrong_type_weight%.yaml:12: principles%[3%]%.weight: expected a number >= 0, got "high"' },
      { "wrong_type_tags.yaml", 'wrong_type_tags%.yaml:6: principles%[1%]%.tags: expected a list of strings, got "safety"' },
      { "wrong_type_principles.yaml", "wrong_type_principles%.yaml:2: principles: expected a non%-empty list of principles, got a mapping" },
      { "negative_weight.yaml", "negative_weight%.yaml:6: principles%[1%]%.weight: expected a number >= 0, got %-1" },
      { "bad_id.yaml", 'bad_id%.yaml:3: principles%[1%]%.id: expected lowercase letters' },
      { "empty_principles.yaml", "empty_principles%.yaml:2: principles: expected a non%-empty list of principles, got an empty list" },
      { "empty.yaml", "empty%.yaml: the file is empty; expected a mapping" },
      { "comments_only.yaml", "comments_only%.yaml: the file is empty" },
      { "top_level_list.yaml", "top_level_list%.yaml:1: expected a mapping with name and principles at the top level, got a list" },
      { "binary.yaml", "binary%.yaml:%d+: refused: " },
      { "alias_bomb.yaml", "alias_bomb%.yaml:%d+:%d+: refused: more than %d+ nodes once aliases are followed %(an alias bomb%?%)" },
      { "extends_cycle_a.yaml", "extends: cycle .*extends_cycle_a%.yaml %-> .*extends_cycle_b%.yaml %-> .*extends_cycle_a%.yaml" },
      { "extends_missing.yaml", 'extends_missing%.yaml:2: extends: cannot open "does_not_exist%.yaml"' },
      { "example_missing_revision.yaml", "example_missing_revision%.yaml:7: principles%[1%]%.examples%[1%]%.revision: missing required field" },
      { "negative_missing_weight.yaml", "negative_missing_weight%.yaml:8: negatives%.off_topic%.weight: missing required field" },
    }
    for _, case in ipairs(cases) do
      local err = load_error(case[1])
      spec.truthy(err:find(case[2]), case[1] .. ": unexpected message: " .. err)
      spec.truthy(err:find("tests/data/constitutions/", 1, true), case[1] .. ": message names the file")
    end
  end)

  spec.it("reports several errors at once", function()
    local err = load_error("wrong_type_principles.yaml")
    spec.truthy(err:find("name: expected a non%-empty string, got 12"), err)
    spec.truthy(err:find("\n", 1, true), "two lines")
  end)

  spec.it("refuses files over the size limit before parsing", function()
    local err = spec.raises(function()
      cai.constitution.load("constitutions/default.yaml", { yaml = { max_bytes = 100 } })
    end, "larger than the limit of 100 bytes")
    spec.truthy(err:find("constitutions/default.yaml", 1, true))
  end)

  spec.it("reads edited files at run time", function()
    local dir = spec.tmpdir()
    local path = dir .. "/c.yaml"
    local function write(weight)
      local f = assert(io.open(path, "w"))
      f:write("name: t\nprinciples:\n  - id: a\n    critique: c\n    revision: r\n    weight: " .. weight .. "\n")
      f:close()
    end
    write(1)
    spec.eq(cai.constitution.load(path):get("a").weight, 1)
    write(3)
    spec.eq(cai.constitution.load(path):get("a").weight, 3)
    os.remove(path)
    os.remove(dir)
  end)

  spec.it("samples principles and counts usage", function()
    local c = cai.constitution.load(D .. "valid/child.yaml")
    local rng = cai.rng(7)
    for _ = 1, 50 do c:sample(1, { rng = rng }) end
    local total = 0
    for _, n in pairs(c.usage) do total = total + n end
    spec.eq(total, 50)
    spec.truthy(c.usage.helpful > c.usage.safe, "weight 2 drawn more than weight 0.5")
    local rr = {}
    for _ = 1, 4 do rr[#rr + 1] = c:sample(1, { strategy = "round_robin" })[1].id end
    spec.eq(rr, { "helpful", "safe", "honest", "helpful" })
    spec.raises(function() c:sample(0) end, "constitution:sample: argument 'n' must be >= 1, got 0", true)
    spec.raises(function() cai.constitution.load(42) end, "cai.constitution.load: argument 'path' must be a string, got number", true)
  end)
end)

spec.run()
