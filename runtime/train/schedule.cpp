#include "train/schedule.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace cai {

const std::vector<std::string>& lr_schedule_types() {
    static const std::vector<std::string> names = {"constant", "constant_with_warmup", "linear", "cosine"};
    return names;
}

void check_lr_schedule(const lr_schedule& s) {
    const auto& names = lr_schedule_types();
    if (std::find(names.begin(), names.end(), s.type) == names.end())
        fail("lr schedule: unknown type \"", s.type, "\"; valid types: constant, constant_with_warmup, linear, cosine");
    if (s.total_steps < 0) fail("lr schedule: total_steps must be >= 0, got ", s.total_steps);
    if (s.warmup_steps < 0) fail("lr schedule: warmup_steps must be >= 0, got ", s.warmup_steps);
    if (!(s.warmup_ratio >= 0 && s.warmup_ratio <= 1))
        fail("lr schedule: warmup_ratio must be in [0, 1], got ", s.warmup_ratio);
    if (s.warmup_steps > 0 && s.warmup_ratio > 0)
        fail("lr schedule: set warmup_steps (", s.warmup_steps, ") or warmup_ratio (", s.warmup_ratio,
             "), not both");
    if (s.type == "constant" && (s.warmup_steps > 0 || s.warmup_ratio > 0))
        fail("lr schedule: \"constant\" has no warmup; use \"constant_with_warmup\"");
}

int64_t warmup_steps_of(const lr_schedule& s) {
    check_lr_schedule(s);
    if (s.warmup_steps > 0) return s.warmup_steps;
    return static_cast<int64_t>(std::ceil(static_cast<double>(s.total_steps) * s.warmup_ratio));
}

double lr_multiplier(const lr_schedule& s, int64_t step) {
    const int64_t warmup = warmup_steps_of(s);
    if (step < 0) fail("lr schedule: step must be >= 0, got ", step);
    if (s.type == "constant") return 1.0;
    if (step < warmup) return double(step) / double(std::max<int64_t>(1, warmup));
    if (s.type == "constant_with_warmup") return 1.0;
    const double remaining_span = double(std::max<int64_t>(1, s.total_steps - warmup));
    if (s.type == "linear") return std::max(0.0, double(s.total_steps - step) / remaining_span);
    // cosine
    const double progress = double(step - warmup) / remaining_span;
    return std::max(0.0, 0.5 * (1.0 + std::cos(M_PI * s.num_cycles * 2.0 * progress)));
}

}  // namespace cai
