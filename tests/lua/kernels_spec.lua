-- cai.kernels: the fused kernels switch, and generation giving the same
-- tokens with the kernels on and off on a tiny random Llama.
local cai = require "cai"
local spec = require "spec"

local dir = spec.tmpdir() .. "/tiny"
local _, vocab = spec.random_model(dir, { seed = 5 })

spec.describe("cai.kernels", function()
  spec.it("reports the instruction set", function()
    local isa, bf16 = cai.kernels.isa()
    spec.truthy(isa == "avx512" or isa == "avx2" or isa == "generic")
    spec.eq(type(bf16), "boolean")
  end)
  spec.it("switches on and off, returning the previous state", function()
    local was = cai.kernels.enabled()
    spec.eq(cai.kernels.set_enabled(false), was)
    spec.eq(cai.kernels.enabled(), false)
    spec.eq(cai.kernels.set_enabled(true), false)
    spec.eq(cai.kernels.enabled(), true)
    cai.kernels.set_enabled(was)
    spec.raises(function() cai.kernels.set_enabled("no") end, "must be a boolean")
  end)
  spec.it("samples the same tokens with the kernels on and off", function()
    local m = cai.model.load(dir, { dtype = "fp32" })
    local opts = { max_new_tokens = 8, temperature = 0.9, top_p = 0.8, top_k = 20, seed = 11, progress = false }
    local prompts = { "the cat sat", "hello" }
    cai.kernels.set_enabled(true)
    local on = m:generate(prompts, opts)
    cai.kernels.set_enabled(false)
    local off = m:generate(prompts, opts)
    cai.kernels.set_enabled(true)
    for i = 1, #prompts do spec.eq(on[i].tokens, off[i].tokens) end
    m:release()
  end)
end)

spec.run()
