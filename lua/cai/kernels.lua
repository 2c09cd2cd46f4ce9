--- cai.kernels: the fused CPU kernels (decode matrix-vector products, attention
--- over the KV cache, RMSNorm, rotary, the gated MLP, sampling) and the switch
--- back to the plain ATen path, which gives the same results within rounding.
--- CAI_KERNELS=0 in the environment starts with them off.
---
---   cai.kernels.set_enabled(false)  -- plain ATen from here on
---   print(cai.kernels.isa())        -- "avx512", true
local k = require "cai._kernels"

local M = {}

---Whether the fused kernels are on.
---@return boolean
M.enabled = k.enabled

---Switches the fused kernels on or off for this process; returns the previous state.
---@param on boolean
---@return boolean
function M.set_enabled(on)
  require("cai.check").value("cai.kernels.set_enabled", "on", on, "boolean")
  return k.set_enabled(on)
end

---The instruction set the kernels use ("avx512", "avx2" or "generic": plain ATen),
---and whether the CPU has AVX512-BF16 dot products.
---@return string, boolean
M.isa = k.isa

return M
