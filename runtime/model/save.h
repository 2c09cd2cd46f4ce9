// Writing a model back as a Hugging Face directory (config.json as loaded,
// model.safetensors under transformers' names, generation_config.json and
// tokenizer files copied from where it was loaded), and the atomic directory
// writer the adapter files share.
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace cai {

class model;
class reward_model;

// Every weight of the model under its HF name, in load order, as the live
// tensors (no copies). A tied lm_head is left out, as transformers saves it.
// int8 projections give their int8 weight and a ".weight_scale" tensor.
std::vector<std::pair<std::string, at::Tensor>> model_named_tensors(const model& m);

// Writes m into dir (created or replaced as a whole) with its weights in
// `dtype` (at::kFloat or at::kBFloat16). A model whose LoRA adapters are
// not merged is an error: merge them first, or save the adapter alone.
void save_model(const model& m, const std::string& dir, at::ScalarType dtype);

// Writes a reward model into dir as transformers' AutoModelForSequenceClassification
// saves one (config.json from reward_model::config_json, the backbone's
// "model.*" tensors and "score.weight", no lm_head) with the tokenizer files
// copied from where the backbone was loaded, so cai.model.load_reward and
// transformers load it. LoRA adapters must be merged first, as for save_model.
void save_reward_model(const reward_model& rm, const std::string& dir, at::ScalarType dtype);

// Builds a directory under a temporary name beside dir, calls fill(tmp_dir),
// then renames it into place, so dir is complete or untouched. An existing
// dir is replaced only when every entry in it is one of `replaceable` (the
// files this kind of directory holds); otherwise it is an error naming the
// stray entry, so a user's other files are never deleted.
void write_directory_atomic(const std::string& dir, const std::vector<std::string>& replaceable,
                            const std::function<void(const std::string& tmp_dir)>& fill);

}  // namespace cai
