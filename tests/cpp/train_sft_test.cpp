// runtime/train/sft: the response-only mask, refusing bad data,
// loss falling on a memorisation task, and resume equal to never stopping.
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
#include "train/sft.h"
#include "train/token_batch.h"
#include "fixtures.h"
#include "test_util.h"

namespace {

using at::Tensor;
using Catch::Matchers::Contains;
using test_util::error_of;
using test_util::temp_dir;

std::shared_ptr<cai::model> make(double dropout = 0.0) { return fixtures::char_lora_model(dropout); }

const std::vector<cai::sft_example> data = {
    {"the cat", " sat."}, {"a dog", " ran far."}, {"bird", " flew."},   {"fish", " swam."},
    {"an ant", " dug."},  {"cow", " ate hay."}, {"the owl", " saw."}, {"bee", " hid."},
};

cai::sft_options options_for(const std::string& out) {
    cai::sft_options o;
    o.trainer.out_dir = out;
    o.trainer.seed = 11;
    o.trainer.epochs = 6;
    o.trainer.learning_rate = 3e-2;
    o.trainer.batches.batch_size = 2;
    o.trainer.gradient_accumulation_steps = 2;
    o.trainer.schedule.type = "linear";
    o.trainer.schedule.warmup_steps = 1;
    o.trainer.logging_steps = 1;
    o.trainer.save_steps = 3;
    o.trainer.show_progress = false;
    return o;
}

}  // namespace

TEST_CASE("sft_tokenize: prompt with BOS, response, EOS; the boundary of tokenize_pair", "[sft]") {
    auto m = make();
    auto t = cai::sft_tokenize(*m, {{"ab", "c."}}, true);
    REQUIRE(t.size() == 1);
    REQUIRE(t[0].ids == std::vector<int32_t>{1, 3, 4, 5, 30, 2});
    REQUIRE(t[0].response_start == 3);
    REQUIRE(t[0].has_eos);
    auto no_eos = cai::sft_tokenize(*m, {{"ab", "c."}}, false);
    REQUIRE(no_eos[0].ids == std::vector<int32_t>{1, 3, 4, 5, 30});
}

TEST_CASE("sft_tokenize: segments are encoded one by one and only the trained ones carry the loss", "[sft]") {
    auto m = make();
    cai::sft_example conversation;
    conversation.segments = {{"ab", false}, {"c.", true}, {"d", false}, {"ef", true}};
    auto t = cai::sft_tokenize(*m, {conversation}, false);
    // With special tokens the first segment starts with BOS.
    REQUIRE(t[0].ids == std::vector<int32_t>{1, 3, 4, 5, 30, 6, 7, 8});
    std::vector<bool> trained;
    for (size_t j = 0; j < t[0].ids.size(); ++j) trained.push_back(t[0].trains(j));
    REQUIRE(trained == std::vector<bool>{false, false, false, true, true, false, true, true});
    REQUIRE(t[0].n_trained() == 4);
    REQUIRE(t[0].response_start == 3);
    // A chat template writes BOS itself: add_special_tokens = false; EOS is trained when asked for.
    auto raw = cai::sft_tokenize(*m, {conversation}, true, false);
    REQUIRE(raw[0].ids == std::vector<int32_t>{3, 4, 5, 30, 6, 7, 8, 2});
    REQUIRE(raw[0].trains(7));
    REQUIRE(raw[0].n_trained() == 5);
    // A text trained from its start: its first token has nothing before it and is not trained.
    cai::sft_example text;
    text.segments = {{"abc", true}};
    auto lm = cai::sft_tokenize(*m, {text}, false, false);
    REQUIRE(lm[0].ids.size() == 3);
    REQUIRE(!lm[0].trains(0));
    REQUIRE(lm[0].n_trained() == 2);
    // Nothing trained is an error naming the record.
    cai::sft_example none;
    none.segments = {{"ab", false}, {"", true}};
    REQUIRE_THAT(error_of([&] { cai::sft_tokenize(*m, {text, none}, false); }),
                 Contains("data[2]") && Contains("no token to train on"));

    // The loss covers exactly the trained positions: each is scored at the position before it.
    cai::token_batch batch = cai::pad_token_rows(*m, {{&t[0].ids, t[0].response_start, t[0].trained.empty() ? nullptr : &t[0].trained}});
    const int64_t T = (int64_t)t[0].ids.size();
    for (int64_t p = 0; p + 1 < T; ++p) {
        INFO("position " << p);
        REQUIRE((batch.targets[0][p].item<int64_t>() >= 0) == t[0].trains((size_t)p + 1));
    }
}

TEST_CASE("sft refuses an example with nothing to train, naming the record", "[sft]") {
    auto m = make();
    REQUIRE_THAT(error_of([&] { cai::sft_tokenize(*m, {{"a", "b"}, {"c", ""}}, false); }),
                 Contains("data[2]") && Contains("response"));
    // With EOS the empty response still trains the EOS token.
    REQUIRE(cai::sft_tokenize(*m, {{"c", ""}}, true)[0].ids.size() == 3);
    REQUIRE_THAT(error_of([&] { cai::sft_tokenize(*m, {}, true); }), Contains("empty"));
    auto bare = make();
    cai::lora_remove(*bare);
    REQUIRE_THAT(error_of([&] { cai::sft_train(*bare, data, options_for(temp_dir())); }), Contains("add_lora"));
}

TEST_CASE("the SFT loss sees response positions only: prompt and padding are not scored", "[sft]") {
    auto m = make();
    auto t = cai::sft_tokenize(*m, {{"the cat", " sat."}, {"a", " dog ran."}}, true);
    std::vector<const cai::sft_tokens*> rows = {&t[0], &t[1]};
    cai::token_batch batch = cai::pad_token_rows(*m, {{&t[0].ids, t[0].response_start}, {&t[1].ids, t[1].response_start}});
    const int64_t T = (int64_t)std::max(t[0].ids.size(), t[1].ids.size());
    REQUIRE(batch.targets.size(1) == T);
    for (int64_t b = 0; b < 2; ++b) {
        const auto& r = *rows[b];
        for (int64_t p = 0; p < T; ++p) {
            // Position p predicts token p + 1: scored when p + 1 is a response token.
            bool trained = p + 1 >= (int64_t)r.response_start && p + 1 < (int64_t)r.ids.size();
            INFO("row " << b << " position " << p);
            REQUIRE(batch.targets[b][p].item<int64_t>() == (trained ? r.ids[p + 1] : -100));
            REQUIRE(batch.scored[b][p].item<float>() == (trained ? 1.0f : 0.0f));
        }
    }
    // The loss is the mean over trained tokens of -log softmax of the model's logits at the target.
    Tensor logp;
    {
        at::NoGradGuard no_grad;
        logp = at::log_softmax(m->forward(batch.ids, batch.mask), -1);  // (B, T, V)
    }
    double sum = 0;
    int n = 0;
    for (int64_t b = 0; b < 2; ++b)
        for (size_t j = rows[b]->response_start; j < rows[b]->ids.size(); ++j, ++n)
            sum -= logp[b][j - 1][rows[b]->ids[j]].item<double>();
    REQUIRE(cai::sft_loss(*m, rows).item<double>() == Approx(sum / n).epsilon(1e-5));

    // Through the model: a batch's loss is the token-weighted mean of its rows' losses, so
    // the padding the shorter row gets changes nothing.
    Tensor a = cai::sft_loss(*m, {&t[0]});
    Tensor b = cai::sft_loss(*m, {&t[0], &t[1]});
    Tensor c = cai::sft_loss(*m, {&t[1]});
    const double n0 = (double)(t[0].ids.size() - t[0].response_start);
    const double n1 = (double)(t[1].ids.size() - t[1].response_start);
    REQUIRE(b.item<double>() == Approx((a.item<double>() * n0 + c.item<double>() * n1) / (n0 + n1)).epsilon(1e-5));
}

TEST_CASE("sft: loss falls on a tiny memorisation task; adapters only; training mode off after", "[sft]") {
    auto m = make();
    std::string out = temp_dir();
    cai::sft_options o = options_for(out);
    o.trainer.epochs = 25;
    o.trainer.logging_steps = 5;
    std::vector<std::string> lines;
    o.trainer.on_log = [&](const std::string& line) { lines.push_back(line); };
    Tensor embed_before = m->embed_tokens.clone();
    auto r = cai::sft_train(*m, data, o);
    REQUIRE(r.steps == 25 * 2);
    REQUIRE_FALSE(r.interrupted);
    REQUIRE(lines.size() == 10);
    REQUIRE(r.last_metrics == lines.back());
    REQUIRE(lines.front().find("\"loss\":") != std::string::npos);
    REQUIRE(lines.front().find("\"grad_norm\":") != std::string::npos);
    REQUIRE(at::equal(m->embed_tokens, embed_before));
    REQUIRE(r.final_checkpoint == cai::checkpoint_dir(out, 50));
    REQUIRE(cai::file_exists(r.final_checkpoint + "/adapter_config.json"));
    // Run again: the finished run resumes to done, logs nothing new and reports its last line.
    auto again = cai::sft_train(*m, data, o);
    REQUIRE(again.steps == 50);
    REQUIRE(lines.size() == 10);
    REQUIRE(again.last_metrics == lines.back());

    auto t = cai::sft_tokenize(*m, data, true);
    std::vector<const cai::sft_tokens*> rows;
    for (auto& e : t) rows.push_back(&e);
    at::NoGradGuard no_grad;
    double trained = cai::sft_loss(*m, rows).item<double>();
    cai::lora_remove(*m);
    double base = cai::sft_loss(*m, rows).item<double>();
    INFO("base " << base << " trained " << trained);
    REQUIRE(trained < 0.5 * base);
}

TEST_CASE("sft: interrupted and resumed gives the same metrics and adapters as never stopped", "[sft]") {
    auto run = [&](const std::string& out, int64_t interrupt_at) {
        auto m = make(0.1);
        cai::sft_options o = options_for(out);
        o.trainer.on_log = fixtures::interrupt_at_step(interrupt_at);
        auto r = cai::sft_train(*m, data, o);
        return std::make_pair(r, cai::lora_named_tensors(*m));
    };
    std::string straight_dir = temp_dir();
    auto straight = run(straight_dir, -1);
    REQUIRE(straight.first.steps == 12);

    std::string dir = temp_dir();
    auto first = run(dir, 4);
    REQUIRE(first.first.interrupted);
    REQUIRE(first.first.steps == 5);
    REQUIRE(first.first.final_checkpoint == cai::checkpoint_dir(dir, 5));
    auto second = run(dir, -1);
    REQUIRE(second.first.resumed_from == cai::checkpoint_dir(dir, 5));
    REQUIRE(second.first.steps == 12);
    REQUIRE(cai::read_file(cai::path_join(dir, "metrics.jsonl")) ==
            cai::read_file(cai::path_join(straight_dir, "metrics.jsonl")));
    REQUIRE(second.second.size() == straight.second.size());
    for (size_t i = 0; i < straight.second.size(); ++i) {
        INFO(straight.second[i].first);
        REQUIRE(at::equal(second.second[i].second, straight.second[i].second));
    }
}

namespace {

double eval_loss_of(cai::model& m, const std::vector<cai::sft_example>& set) {
    at::NoGradGuard no_grad;
    auto toks = cai::sft_tokenize(m, set, true);
    std::vector<const cai::sft_tokens*> rows;
    for (const auto& t : toks) rows.push_back(&t);
    return cai::sft_loss(m, rows).item<double>();
}

double json_field(const std::string& line, const std::string& name) {
    size_t at = line.find("\"" + name + "\":");
    REQUIRE(at != std::string::npos);
    return std::stod(line.substr(at + name.size() + 3));
}

}  // namespace

TEST_CASE("sft: eval_loss every eval_steps on the eval set; keep_best keeps the best adapter in out/best", "[sft]") {
    auto m = make();
    const std::vector<cai::sft_example> eval_set = {{"the cat", " sat."}, {"bee", " hid."}, {"a dog", " ran far."}};
    std::string out = temp_dir();
    cai::sft_options o = options_for(out);
    o.eval_data = eval_set;
    o.trainer.eval.eval_steps = 4;
    o.trainer.eval.keep_best = "eval_loss";
    std::vector<std::string> evals;
    o.trainer.on_log = [&](const std::string& line) {
        if (line.find("\"eval_loss\"") != std::string::npos) evals.push_back(line);
    };
    auto r = cai::sft_train(*m, data, o);
    REQUIRE(r.steps == 12);
    REQUIRE(evals.size() == 3);
    REQUIRE(evals[0].rfind("{\"step\":4,", 0) == 0);
    REQUIRE(r.last_metrics.find("eval_loss") == std::string::npos);
    // The last evaluation is the final model's loss on the eval set (dropout off, all rows at once).
    REQUIRE(json_field(evals[2], "eval_loss") == Approx(eval_loss_of(*m, eval_set)).epsilon(1e-4));
    double best = 1e9;
    int64_t best_step = -1;
    for (const auto& line : evals)
        if (json_field(line, "eval_loss") < best) {
            best = json_field(line, "eval_loss");
            best_step = (int64_t)json_field(line, "step");
        }
    REQUIRE(r.best_checkpoint == cai::path_join(out, "best"));
    REQUIRE(r.best_step == best_step);
    REQUIRE(r.best_value == Approx(best));
    REQUIRE(cai::file_exists(cai::path_join(out, "best/adapter_config.json")));
    // The adapter saved there scores the best eval_loss.
    auto fresh = make();
    cai::lora_remove(*fresh);
    cai::lora_load(*fresh, cai::path_join(out, "best"));
    REQUIRE(eval_loss_of(*fresh, eval_set) == Approx(best).epsilon(1e-4));

    cai::sft_options bad = options_for(temp_dir());
    bad.eval_data = eval_set;
    bad.trainer.eval.eval_steps = 2;
    bad.trainer.eval.keep_best = "eval_accuracy";
    REQUIRE_THAT(error_of([&] { cai::sft_train(*make(), data, bad); }), Contains("eval_accuracy") && Contains("eval_loss"));
    bad.eval_data.clear();
    bad.trainer.eval.keep_best = "eval_loss";
    REQUIRE_THAT(error_of([&] { cai::sft_train(*make(), data, bad); }), Contains("eval_data"));
}
