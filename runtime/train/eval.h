// Evaluation during training: an eval set scored every eval_steps optimizer
// steps (a metrics.jsonl line {"step": N, "eval_loss": ..., ...}), and
// keep_best: the adapter (or the full model) of the best step by one eval
// metric kept in out/best/, written atomically, its value and step in
// out/best.json (read back on resume).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace cai {

struct eval_options {
    int64_t eval_steps = 0;  // evaluate after every this many steps (0: never)
    std::string keep_best;   // "" or an eval metric name ("eval_loss", "eval_rewards/accuracies", ...)
};

inline bool eval_due(const eval_options& o, int64_t step) { return o.eval_steps > 0 && step % o.eval_steps == 0; }

// As transformers' greater_is_better inferred from the name: accuracies and
// margins are better higher, everything else (losses) lower.
bool greater_is_better(const std::string& metric);

class best_keeper {
public:
    // metric: one of valid (the trainer's eval metric names; "loss" is read
    // as "eval_loss"). save(dir) writes the model's state into a new dir.
    best_keeper(std::string out_dir, std::string metric, const std::vector<std::string>& valid,
                std::function<void(const std::string&)> save, const char* who);
    // After an evaluation: saves when metrics[metric] beats the best so far.
    bool offer(int64_t step, const std::vector<std::pair<std::string, double>>& metrics);
    const std::string& metric() const { return metric_; }
    std::string dir() const;        // out/best
    int64_t best_step() const { return best_step_; }  // -1: none yet
    double best_value() const { return best_value_; }

private:
    std::string out_dir_, metric_;
    std::function<void(const std::string&)> save_;
    bool greater_ = false;
    int64_t best_step_ = -1;
    double best_value_ = 0;
};

}  // namespace cai
