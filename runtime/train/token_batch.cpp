#include "train/token_batch.h"

#include <algorithm>

#include "core/error.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace cai {

token_batch pad_token_rows(const model& m, const std::vector<token_row>& rows, int64_t min_length) {
    int64_t T = min_length;
    for (const auto& r : rows) T = std::max<int64_t>(T, (int64_t)r.ids->size());
    const int64_t B = (int64_t)rows.size();
    const int32_t pad = m.tok && m.tok->pad_id >= 0 ? m.tok->pad_id : 0;
    token_batch out;
    out.ids = at::full({B, T}, (int64_t)pad, at::kLong);
    out.mask = at::zeros({B, T}, at::kLong);
    out.targets = at::full({B, T}, (int64_t)-100, at::kLong);
    auto id = out.ids.accessor<int64_t, 2>();
    auto mk = out.mask.accessor<int64_t, 2>();
    auto tg = out.targets.accessor<int64_t, 2>();
    for (int64_t b = 0; b < B; ++b) {
        const std::vector<int32_t>& ids = *rows[b].ids;
        const std::vector<uint8_t>* trained = rows[b].trained;
        if (!trained && rows[b].start < 1)
            fail("token batch: row ", b + 1, " scores its first token, which has no position before it");
        if (trained && trained->size() != ids.size())
            fail("token batch: row ", b + 1, " has ", trained->size(), " flags for ", ids.size(), " ids");
        for (size_t t = 0; t < ids.size(); ++t) {
            id[b][t] = ids[t];
            mk[b][t] = 1;
        }
        for (size_t j = 1; j < ids.size(); ++j)
            if (trained ? (*trained)[j] != 0 : j >= rows[b].start) tg[b][j - 1] = ids[j];
    }
    out.scored = out.targets.ge(0).to(at::kFloat);
    return out;
}

}  // namespace cai
