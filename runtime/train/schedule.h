// Learning-rate schedules with the formulas of transformers'
// get_constant_schedule, get_constant_schedule_with_warmup,
// get_linear_schedule_with_warmup and get_cosine_schedule_with_warmup.
//
// `step` counts the optimizer steps already taken: the first update uses
// step 0 (so with warmup its learning rate is 0, as in transformers).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace cai {

struct lr_schedule {
    std::string type = "linear";  // "constant", "constant_with_warmup", "linear", "cosine"
    int64_t total_steps = 0;      // optimizer steps in the whole run
    int64_t warmup_steps = 0;     // > 0 wins over warmup_ratio (setting both is an error)
    double warmup_ratio = 0;      // warmup = ceil(total_steps * warmup_ratio)
    double num_cycles = 0.5;      // cosine: 0.5 = one half-cosine from 1 down to 0
};

const std::vector<std::string>& lr_schedule_types();

// Throws cai::error naming the field for an unknown type, negative counts,
// a ratio outside [0, 1], both warmups set, or warmup with "constant".
void check_lr_schedule(const lr_schedule& s);

// The warmup length transformers would use (TrainingArguments.get_warmup_steps).
int64_t warmup_steps_of(const lr_schedule& s);

// The factor the base learning rate is multiplied by before update `step`.
double lr_multiplier(const lr_schedule& s, int64_t step);

}  // namespace cai
