// runtime/train/dpo: completion log-probs match score_completions, and on a
// separable toy set the rewards of chosen completions rise above rejected ones.
#include <catch2/catch.hpp>

#include <ATen/ATen.h>

#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/fs.h"
#include "model/config.h"
#include "model/model.h"
#include "model/random.h"
#include "tokenizer/tokenizer.h"
#include "train/checkpoint.h"
#include "train/interrupt.h"
#include "train/lora.h"
#include "train/dpo.h"
#include "train/dpo_reference.h"
#include "generate/generate.h"
#include "fixtures.h"
#include "test_util.h"

namespace {

using at::Tensor;
using Catch::Matchers::Contains;
using test_util::error_of;
using test_util::temp_dir;

std::shared_ptr<cai::model> make(double dropout = 0.0) { return fixtures::char_lora_model(dropout); }

const std::vector<cai::dpo_pair> pairs = {
    {"is ice cold", " yes.", " no."}, {"is fire cold", " no.", " yes."}, {"is snow white", " yes.", " no."},
    {"is coal white", " no.", " yes."}, {"is sea wet", " yes.", " no."}, {"is sand wet", " no.", " yes."},
};

cai::dpo_options options_for(const std::string& out) {
    cai::dpo_options o;
    o.trainer.out_dir = out;
    o.trainer.seed = 4;
    o.trainer.epochs = 15;
    o.trainer.learning_rate = 2e-2;
    o.trainer.batches.batch_size = 3;
    o.trainer.schedule.type = "constant";
    o.trainer.logging_steps = 5;
    o.beta = 0.5;
    o.trainer.show_progress = false;
    return o;
}

double field(const std::string& line, const std::string& name) {
    size_t at = line.find("\"" + name + "\":");
    REQUIRE(at != std::string::npos);
    return std::stod(line.substr(at + name.size() + 3));
}

}  // namespace

TEST_CASE("completion_logps sums log p over completion tokens, as score_completions", "[dpo]") {
    auto m = make();
    cai::dpo_tokens a{{1, 3, 4, 5, 30}, 3}, b{{1, 7, 8, 9, 10, 11, 2}, 2};
    at::NoGradGuard no_grad;
    Tensor sums = cai::completion_logps(*m, {&a, &b}, false);
    Tensor means = cai::completion_logps(*m, {&a, &b}, true);
    auto want = cai::score_completions(*m, {{1, 3, 4}, {1, 7}}, {{5, 30}, {8, 9, 10, 11, 2}});
    REQUIRE(sums[0].item<double>() == Approx(want[0].sum).epsilon(1e-5));
    REQUIRE(sums[1].item<double>() == Approx(want[1].sum).epsilon(1e-5));
    REQUIRE(means[1].item<double>() == Approx(want[1].sum / 5).epsilon(1e-5));
}

TEST_CASE("dpo: on a separable toy set chosen rewards rise above rejected ones", "[dpo]") {
    auto m = make();
    std::string out = temp_dir();
    std::vector<std::string> lines;
    cai::dpo_options o = options_for(out);
    o.trainer.on_log = [&](const std::string& line) { lines.push_back(line); };
    auto r = cai::dpo_train(*m, pairs, o);
    REQUIRE(r.steps == 30);
    REQUIRE(lines.size() == 6);
    INFO(lines.front() << "\n" << lines.back());
    REQUIRE(field(lines.back(), "rewards/accuracies") == 1.0);
    REQUIRE(field(lines.back(), "rewards/margins") > field(lines.front(), "rewards/margins"));
    REQUIRE(field(lines.back(), "rewards/margins") > 1.0);
    REQUIRE(field(lines.back(), "loss") < 0.5 * field(lines.front(), "loss"));
    REQUIRE(lines.front().find("\"logps/rejected\":") != std::string::npos);
    REQUIRE(cai::file_exists(r.final_checkpoint + "/adapter_config.json"));
}

TEST_CASE("dpo refuses bad options and empty completions, naming them", "[dpo]") {
    auto m = make();
    cai::dpo_options o = options_for(temp_dir());
    o.loss = "sigmoidal";
    REQUIRE_THAT(error_of([&] { cai::dpo_train(*m, pairs, o); }), Contains("sigmoidal") && Contains("ipo"));
    o = options_for(temp_dir());
    o.eos = false;
    REQUIRE_THAT(error_of([&] { cai::dpo_train(*m, {{"a", "b", "c"}, {"a", "b", ""}}, o); }),
                 Contains("pairs[2]") && Contains("rejected"));
    auto bare = make();
    cai::lora_remove(*bare);
    REQUIRE_THAT(error_of([&] { cai::dpo_train(*bare, pairs, options_for(temp_dir())); }), Contains("add_lora"));
}

TEST_CASE("dpo: interrupted and resumed gives the same metrics and adapters as never stopped", "[dpo]") {
    auto run = [&](const std::string& out, int64_t interrupt_at) {
        auto m = make(0.1);
        cai::dpo_options o = options_for(out);
        o.trainer.epochs = 3;
        o.trainer.logging_steps = 1;
        o.trainer.save_steps = 2;
        o.trainer.on_log = fixtures::interrupt_at_step(interrupt_at);
        auto r = cai::dpo_train(*m, pairs, o);
        return std::make_pair(r, cai::lora_named_tensors(*m));
    };
    std::string straight_dir = temp_dir();
    auto straight = run(straight_dir, -1);
    REQUIRE(straight.first.steps == 6);
    std::string dir = temp_dir();
    auto first = run(dir, 2);
    REQUIRE(first.first.interrupted);
    REQUIRE(first.first.steps == 3);
    auto second = run(dir, -1);
    REQUIRE(second.first.resumed_from == cai::checkpoint_dir(dir, 3));
    REQUIRE(cai::read_file(cai::path_join(dir, "metrics.jsonl")) ==
            cai::read_file(cai::path_join(straight_dir, "metrics.jsonl")));
    for (size_t i = 0; i < straight.second.size(); ++i) {
        INFO(straight.second[i].first);
        REQUIRE(at::equal(second.second[i].second, straight.second[i].second));
    }
}

namespace {

std::vector<std::string> run_lines(cai::model& m, const std::vector<cai::dpo_pair>& data, cai::dpo_options o) {
    std::vector<std::string> lines;
    o.trainer.epochs = 2;
    o.trainer.logging_steps = 1;
    o.trainer.on_log = [&](const std::string& line) { lines.push_back(line); };
    cai::dpo_train(m, data, o);
    return lines;
}

void require_same_metrics(const std::vector<std::string>& a, const std::vector<std::string>& b) {
    REQUIRE(a.size() == b.size());
    for (size_t i = 0; i < a.size(); ++i)
        for (const char* name : {"loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen"}) {
            INFO(a[i] << "\n" << b[i] << "\n" << name);
            REQUIRE(field(a[i], name) == Approx(field(b[i], name)).margin(1e-5));
        }
}

}  // namespace

TEST_CASE("dpo: a separate reference model equal to the base gives the adapter_off metrics", "[dpo]") {
    auto m = make();
    auto base_lines = run_lines(*m, pairs, options_for(temp_dir()));
    auto policy = make();
    cai::dpo_options o = options_for(temp_dir());
    o.reference_model = make();  // B = 0: the same function as the adapters-off policy
    require_same_metrics(base_lines, run_lines(*policy, pairs, o));

    cai::model_config c = cai::parse_model_config(
        R"({"model_type":"llama","vocab_size":40,"hidden_size":16,"intermediate_size":24,
            "num_hidden_layers":1,"num_attention_heads":4,"num_key_value_heads":2})");
    o.reference_model = cai::model::from_tensors(c, cai::random_model_tensors(c, 5, 0.3), at::kFloat, "ref");
    REQUIRE_THAT(error_of([&] { cai::dpo_train(*policy, pairs, o); }), Contains("vocab_size 40"));
    o.reference_model = policy;
    REQUIRE_THAT(error_of([&] { cai::dpo_train(*policy, pairs, o); }), Contains("adapter_off"));
}

TEST_CASE("dpo: cached reference log-probs give the uncached metrics; a stale cache is recomputed", "[dpo]") {
    auto plain_model = make();
    auto plain = run_lines(*plain_model, pairs, options_for(temp_dir()));

    std::string dir = temp_dir();
    cai::dpo_options o = options_for(dir);
    o.reference_cache = true;
    auto m = make();
    require_same_metrics(plain, run_lines(*m, pairs, o));
    const std::string cache = cai::path_join(dir, "reference_logps.json");
    REQUIRE(cai::file_exists(cache));
    const std::string written = cai::read_file(cache);
    auto fresh = make();
    const std::string fp = cai::dpo_reference_fingerprint(*fresh, true, *fresh->tok, pairs, true, false);
    REQUIRE(written.find(fp) != std::string::npos);

    // The fingerprint follows the data, the options, the weights and the vocabulary.
    auto other_pairs = pairs;
    other_pairs[2].chosen = " yes!";
    REQUIRE(cai::dpo_reference_fingerprint(*fresh, true, *fresh->tok, other_pairs, true, false) != fp);
    REQUIRE(cai::dpo_reference_fingerprint(*fresh, true, *fresh->tok, pairs, true, true) != fp);
    REQUIRE(cai::dpo_reference_fingerprint(*fresh, true, *fresh->tok, pairs, false, false) != fp);
    {
        at::NoGradGuard g;
        fresh->layers[1].up_proj.weight[0][0].add_(1.0);
    }
    REQUIRE(cai::dpo_reference_fingerprint(*fresh, true, *fresh->tok, pairs, true, false) != fp);

    // A cache with the right fingerprint is used as it is (here doctored: the metrics move) ...
    std::string dir2 = temp_dir();
    cai::write_file_atomic(cai::path_join(dir2, "reference_logps.json"),
                           "{\"fingerprint\":\"" + fp + "\",\"chosen\":[-50,-50,-50,-50,-50,-50],"
                           "\"rejected\":[-1,-1,-1,-1,-1,-1]}");
    cai::dpo_options o2 = options_for(dir2);
    o2.reference_cache = true;
    auto m2 = make();
    auto doctored = run_lines(*m2, pairs, o2);
    REQUIRE(field(doctored.front(), "rewards/chosen") > field(plain.front(), "rewards/chosen") + 1.0);

    // ... and one for other data is recomputed and replaced.
    std::string dir3 = temp_dir();
    cai::write_file_atomic(cai::path_join(dir3, "reference_logps.json"),
                           "{\"fingerprint\":\"0000000000000000\",\"chosen\":[-50,-50,-50,-50,-50,-50],"
                           "\"rejected\":[-1,-1,-1,-1,-1,-1]}");
    cai::dpo_options o3 = options_for(dir3);
    o3.reference_cache = true;
    auto m3 = make();
    require_same_metrics(plain, run_lines(*m3, pairs, o3));
    REQUIRE(cai::read_file(cai::path_join(dir3, "reference_logps.json")) == written);
}

TEST_CASE("dpo: rpo_alpha adds alpha times the chosen tokens' mean NLL, logged as nll_loss", "[dpo]") {
    auto m = make();
    // By hand: -log p of every chosen completion token (and EOS) under the untrained policy.
    double nll_sum = 0;
    int64_t count = 0;
    for (const auto& p : pairs) {
        cai::pair_ids t = cai::tokenize_pair(*m->tok, p.prompt, p.chosen);
        t.ids.push_back(2);
        at::Tensor ids = at::tensor(std::vector<int64_t>(t.ids.begin(), t.ids.end()), at::kLong).unsqueeze(0);
        at::Tensor lp = m->logprobs(ids);  // (1, T)
        for (size_t j = t.completion_start; j < t.ids.size(); ++j, ++count) nll_sum -= lp[0][(int64_t)j].item<double>();
    }
    const double nll = nll_sum / double(count);
    cai::dpo_options o = options_for(temp_dir());
    o.trainer.max_steps = 1;
    o.trainer.logging_steps = 1;
    o.trainer.batches.batch_size = 6;
    o.rpo_alpha = 0.7;
    std::vector<std::string> lines;
    o.trainer.on_log = [&](const std::string& line) { lines.push_back(line); };
    cai::dpo_train(*m, pairs, o);
    REQUIRE(lines.size() == 1);
    INFO(lines[0]);
    REQUIRE(field(lines[0], "nll_loss") == Approx(nll).epsilon(1e-5));
    // LoRA B = 0: policy = reference, so the sigmoid loss is log 2.
    REQUIRE(field(lines[0], "loss") == Approx(std::log(2.0) + 0.7 * nll).epsilon(1e-5));
    o.rpo_alpha = -1;
    REQUIRE_THAT(error_of([&] { cai::dpo_train(*m, pairs, o); }), Contains("rpo_alpha"));
}

TEST_CASE("dpo: eval pairs logged as eval_loss and eval_rewards/... every eval_steps; keep_best by accuracies", "[dpo]") {
    auto m = make();
    const std::vector<cai::dpo_pair> eval_set = {pairs[0], pairs[3], pairs[4]};
    std::string out = temp_dir();
    cai::dpo_options o = options_for(out);
    o.eval_pairs = eval_set;
    o.trainer.eval.eval_steps = 5;
    o.trainer.eval.keep_best = "rewards/accuracies";
    std::vector<std::string> evals;
    o.trainer.on_log = [&](const std::string& line) {
        if (line.find("\"eval_loss\"") != std::string::npos) evals.push_back(line);
    };
    auto r = cai::dpo_train(*m, pairs, o);
    REQUIRE(evals.size() == 6);
    REQUIRE(evals[1].rfind("{\"step\":10,", 0) == 0);
    REQUIRE(r.last_metrics.find("eval_") == std::string::npos);
    for (const char* name : {"eval_rewards/chosen", "eval_rewards/rejected", "eval_rewards/margins",
                             "eval_logps/chosen", "eval_logps/rejected"})
        REQUIRE(evals[0].find(std::string("\"") + name + "\":") != std::string::npos);
    // The last evaluation by hand: the trained policy's summed chosen log-probs.
    {
        at::NoGradGuard g;
        double sum = 0;
        for (const auto& p : eval_set) {
            cai::pair_ids t = cai::tokenize_pair(*m->tok, p.prompt, p.chosen);
            t.ids.push_back(2);
            at::Tensor ids = at::tensor(std::vector<int64_t>(t.ids.begin(), t.ids.end()), at::kLong).unsqueeze(0);
            at::Tensor lp = m->logprobs(ids);
            for (size_t j = t.completion_start; j < t.ids.size(); ++j) sum += lp[0][(int64_t)j].item<double>();
        }
        REQUIRE(field(evals.back(), "eval_logps/chosen") == Approx(sum / 3.0).epsilon(1e-4));
    }
    // Greater is better for accuracies: the first step reaching the maximum is kept.
    double best = -1;
    int64_t best_step = -1;
    for (const auto& line : evals)
        if (field(line, "eval_rewards/accuracies") > best) {
            best = field(line, "eval_rewards/accuracies");
            best_step = (int64_t)field(line, "step");
        }
    REQUIRE(r.best_step == best_step);
    REQUIRE(r.best_value == best);
    REQUIRE(r.best_checkpoint == cai::path_join(out, "best"));
    REQUIRE(cai::file_exists(cai::path_join(out, "best/adapter_model.safetensors")));
    REQUIRE(cai::read_file(cai::path_join(out, "best.json")).find("eval_rewards/accuracies") != std::string::npos);

    cai::dpo_options bad = options_for(temp_dir());
    bad.eval_pairs = eval_set;
    bad.trainer.eval.eval_steps = 5;
    bad.trainer.eval.keep_best = "eval_nll_loss";  // only with rpo_alpha
    REQUIRE_THAT(error_of([&] { cai::dpo_train(*make(), pairs, bad); }), Contains("eval_rewards/margins"));
}
