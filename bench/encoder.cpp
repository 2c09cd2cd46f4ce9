// Batch scoring with the encoder classifiers (BERT and DeBERTa-v3 shapes,
// random weights): rows/s of encoder_classifier::logits_rows (rows sorted by
// length, right-padded batches) against two baselines measured in the same
// process on the same rows: the plain forward one row at a time, and the
// plain forward over batches in the given order (padded to each batch's
// longest row, as an unsorted loop would).
//   build/bench_encoder [small|base] [rows] [batch_size]
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/rng.h"
#include "model/encoder.h"

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string config_json(const std::string& kind, bool base) {
    const int hidden = base ? 768 : 256, layers = base ? 12 : 4, heads = base ? 12 : 4, ff = base ? 3072 : 1024;
    char buf[1024];
    if (kind == "bert")
        std::snprintf(buf, sizeof buf,
                      R"({"architectures":["BertForSequenceClassification"],"model_type":"bert","vocab_size":30522,)"
                      R"("hidden_size":%d,"num_hidden_layers":%d,"num_attention_heads":%d,"intermediate_size":%d,)"
                      R"("max_position_embeddings":512,"type_vocab_size":2,"id2label":{"0":"safe","1":"unsafe"}})",
                      hidden, layers, heads, ff);
    else
        std::snprintf(buf, sizeof buf,
                      R"({"architectures":["DebertaV2ForSequenceClassification"],"model_type":"deberta-v2",)"
                      R"("vocab_size":128100,"hidden_size":%d,"num_hidden_layers":%d,"num_attention_heads":%d,)"
                      R"("intermediate_size":%d,"max_position_embeddings":512,"type_vocab_size":0,)"
                      R"("relative_attention":true,"position_buckets":256,"pos_att_type":["p2c","c2p"],)"
                      R"("share_att_key":true,"norm_rel_ebd":"layer_norm","position_biased_input":false,)"
                      R"("layer_norm_eps":1e-7,"id2label":{"0":"LABEL_0"}})",
                      hidden, layers, heads, ff);
    return buf;
}

// The plain forward over batches in the given order.
void unsorted(const cai::encoder_classifier& m, const std::vector<cai::encoder_row>& rows, int64_t batch_size) {
    c10::InferenceMode guard;
    for (size_t begin = 0; begin < rows.size(); begin += (size_t)batch_size) {
        const size_t end = std::min(rows.size(), begin + (size_t)batch_size);
        size_t longest = 0;
        for (size_t i = begin; i < end; ++i) longest = std::max(longest, rows[i].ids.size());
        at::Tensor ids = at::zeros({(int64_t)(end - begin), (int64_t)longest}, at::kLong);
        at::Tensor mask = at::zeros_like(ids);
        for (size_t i = begin; i < end; ++i)
            for (size_t t = 0; t < rows[i].ids.size(); ++t) {
                ids[(int64_t)(i - begin)][(int64_t)t] = rows[i].ids[t];
                mask[(int64_t)(i - begin)][(int64_t)t] = 1;
            }
        m.logits(ids, mask, {});
    }
}

}  // namespace

int main(int argc, char** argv) {
    const bool base = argc > 1 && std::string(argv[1]) == "base";
    const int n = argc > 2 ? std::atoi(argv[2]) : 64;
    const int64_t batch_size = argc > 3 ? std::atoll(argv[3]) : 16;
    std::printf("encoder batch scoring, %s shapes, %d rows of 16..256 tokens, batch_size %lld\n",
                base ? "base (768 x 12)" : "small (256 x 4)", n, (long long)batch_size);
    for (const std::string kind : {"bert", "deberta-v2"}) {
        char tmpl[] = "/tmp/cai_bench_encoder_XXXXXX";
        std::string dir = mkdtemp(tmpl);
        cai::encoder_classifier::write_random(dir, config_json(kind, base), 1, 0.02);
        auto m = cai::encoder_classifier::load(dir, at::kFloat);
        std::system(("rm -rf " + dir).c_str());

        cai::rng gen(7);
        std::vector<cai::encoder_row> rows(n);
        size_t tokens = 0;
        for (auto& r : rows) {
            r.ids.resize((size_t)gen.integer(16, 256));
            for (auto& id : r.ids) id = (int32_t)gen.integer(5, 20000);
            tokens += r.ids.size();
        }
        auto t0 = std::chrono::steady_clock::now();
        m->logits_rows(rows, 1);
        const double one = seconds_since(t0);
        t0 = std::chrono::steady_clock::now();
        unsorted(*m, rows, batch_size);
        const double plain = seconds_since(t0);
        t0 = std::chrono::steady_clock::now();
        m->logits_rows(rows, batch_size);
        const double sorted = seconds_since(t0);
        std::printf("%-10s %6.1fM params | one row at a time %7.1f rows/s | batches in order %7.1f rows/s | "
                    "sorted batches %7.1f rows/s (%.2fx in order, %.2fx one at a time) | %.0f tokens/s\n",
                    kind.c_str(), m->parameter_count() / 1e6, n / one, n / plain, n / sorted, plain / sorted,
                    one / sorted, tokens / sorted);
    }
    return 0;
}
