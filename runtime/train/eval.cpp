// keep_best bookkeeping (see eval.h).
#include "train/eval.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "core/strings.h"

namespace cai {

bool greater_is_better(const std::string& metric) {
    return ends_with(metric, "accuracies") || ends_with(metric, "margins");
}

best_keeper::best_keeper(std::string out_dir, std::string metric, const std::vector<std::string>& valid,
                         std::function<void(const std::string&)> save, const char* who)
    : out_dir_(std::move(out_dir)), metric_(std::move(metric)), save_(std::move(save)) {
    if (metric_.rfind("eval_", 0) != 0) metric_ = "eval_" + metric_;
    bool known = false;
    std::string names;
    for (const auto& v : valid) {
        known = known || v == metric_;
        names += (names.empty() ? "" : ", ") + v;
    }
    if (!known) fail(who, ": keep_best \"", metric_, "\" is not an eval metric; valid: ", names);
    greater_ = greater_is_better(metric_);
    const std::string state = path_join(out_dir_, "best.json");
    if (file_exists(state) && is_directory(dir())) {
        auto j = nlohmann::json::parse(read_file(state));
        if (j.value("metric", "") == metric_ && j["value"].is_number()) {
            best_value_ = j["value"].get<double>();
            best_step_ = j.value("step", (int64_t)-1);
        }
    }
}

std::string best_keeper::dir() const { return path_join(out_dir_, "best"); }

bool best_keeper::offer(int64_t step, const std::vector<std::pair<std::string, double>>& metrics) {
    for (const auto& [name, value] : metrics) {
        if (name != metric_) continue;
        if (!std::isfinite(value)) return false;
        const bool better = best_step_ < 0 || (greater_ ? value > best_value_ : value < best_value_);
        if (!better) return false;
        save_(dir());
        best_step_ = step;
        best_value_ = value;
        nlohmann::json j = {{"metric", metric_}, {"value", value}, {"step", step},
                            {"greater_is_better", greater_}};
        write_file_atomic(path_join(out_dir_, "best.json"), j.dump());
        log_info("best ", metric_, " ", value, " at step ", step, ": saved ", dir());
        return true;
    }
    return false;
}

}  // namespace cai
