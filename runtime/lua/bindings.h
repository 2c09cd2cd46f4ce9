// The luaopen_* function of every binding file. register.cpp installs each
// into package.preload under its module name ("cai._json", ...); the Lua
// library in lua/cai/ builds the friendly API on top of them.
#pragma once

#include <lua.hpp>

namespace cai {

void register_bindings(lua_State* L);

}  // namespace cai

extern "C" {
int luaopen_cai_core(lua_State* L);      // lua_core.cpp: argv, log, version, files
int luaopen_cai_progress(lua_State* L);  // lua_progress.cpp: progress bars (cai.progress)
int luaopen_cai_json(lua_State* L);      // lua_json.cpp: json and jsonl
int luaopen_cai_rng(lua_State* L);       // lua_rng.cpp: cai.rng objects
int luaopen_cai_yaml(lua_State* L);     // lua_yaml.cpp: YAML files with line/column marks
int luaopen_cai_spm(lua_State* L);       // lua_spm.cpp: sentencepiece training/encoding primitives
int luaopen_cai_tokenizer(lua_State* L);  // lua_tokenizer.cpp: tokenizer objects (cai.tokenizer)
int luaopen_cai_train(lua_State* L);      // lua_train.cpp: DPO losses, lr schedules (cai.train)
int luaopen_cai_model(lua_State* L);      // lua_model.cpp: models, saving them (cai.model); lua_tensor.cpp: their tensors
int luaopen_cai_reward(lua_State* L);     // lua_reward.cpp: reward models (cai.model.load_reward)
int luaopen_cai_encoder(lua_State* L);    // lua_encoder.cpp: encoder classifiers (cai.model.load_classifier)
int luaopen_cai_lora(lua_State* L);       // lua_lora.cpp: LoRA adapters (m:add_lora, ...)
int luaopen_cai_dist(lua_State* L);       // lua_dist.cpp: rank, world size, barrier (cai.dist)
int luaopen_cai_kernels(lua_State* L);    // lua_kernels.cpp: the fused kernels switch (cai.kernels)
int luaopen_cai_run(lua_State* L);        // lua_run.cpp: run lock, temporaries, fingerprints, Ctrl-C (cai.run)
int luaopen_cai_serve(lua_State* L);      // lua_serve.cpp: the HTTP server and locked appends (cai.serve)
}
