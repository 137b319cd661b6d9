// The MoE block: shared experts on every token plus the routed experts each token picked.
// Tokens are grouped per expert so each routed expert's weights are streamed once per step, and
// only the experts some token chose are touched. The matrices of all active experts (and the
// shared ones) are split into row blocks and spread over the thread pool together (LinearJobs,
// balanced: a prefill gives the experts different token counts): at batch 1
// each expert matrix is small (512 rows), and splitting them one at a time would leave a thread
// idle at every join. Every output row is computed by the same kernel call it would get alone,
// so the result does not depend on the split.
#include "engine/model/moe.h"

#include <algorithm>
#include <cstring>

#include "engine/base/threads.h"
#include "engine/kernels/ops.h"
#include "engine/model/mlp.h"

namespace dsv3 {

namespace {

// Rows per piece of an expert matrix (LinearJobs): each piece is one kernel call.
constexpr int64_t kRowBlock = 64;
// A step with this many (token, expert) picks gathers and sums back its rows in parallel, each
// thread its own columns of every row (a prefill's picks are thousands of rows); a decode
// step's few rows are copied inline.
constexpr int64_t kParallelPicks = 16;

// Prepares s->inputs for one projection of every expert: [0] the shared experts' N rows of
// `shared_x`, [1 + e] active routed expert e's rows of `routed_x` (width columns each, stacked
// as `offset` says), each for its matrix `proj`'s format; in parallel, in this step's form.
void PrepareInputs(const MoeWeights& w, const std::vector<int64_t>& offset, const float* shared_x, int64_t N,
                   const float* routed_x, int64_t width, WeightMatrix MlpWeights::*proj, MoeScratch* s) {
  const LinearActivations activations = CurrentLinearActivations();  // read on this thread
  const int64_t E = static_cast<int64_t>(w.experts.size());
  s->inputs.resize(static_cast<size_t>(E) + 1);
  ParallelFor(E + 1, 1, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      if (i == 0) {
        if (!(w.shared.*proj).empty()) s->inputs[0].Prepare(shared_x, N, w.shared.*proj, activations);
      } else if (offset[i] > offset[i - 1]) {
        const int64_t e = i - 1;
        s->inputs[i].Prepare(routed_x + offset[e] * width, offset[e + 1] - offset[e], w.experts[e].*proj, activations);
      }
    }
  });
}

// The first routed expert some token of the step picked (offset: the picks stacked expert by
// expert); E when none did.
int64_t FirstActiveExpert(const std::vector<int64_t>& offset, int64_t E) {
  int64_t e = 0;
  while (e < E && offset[e + 1] == offset[e]) ++e;
  return e;
}

// A step of several tokens whose routed experts all take int8 activations in one form: every
// token is quantized once, into s->all_tokens, and each active expert's input takes its tokens'
// rows of it (PrepareRowsOf: the rows PrepareInputs would quantize again from the gathered
// floats, copied, so the same bits). 512 tokens, 6 picks each, went through the quantizer 3,584
// times a layer, and their floats were gathered first: ~3.4 ms of an INT4 MoE layer's ~37 ms
// under --activations int8-all. False, with nothing prepared for the experts, when the first
// active expert takes float32 or bf16, or some active expert another form than the first one's
// (a checkpoint of mixed formats): the caller gathers floats then.
bool PrepareQuantizedOnce(const ModelConfig& c, const MoeWeights& w, const float* x, int64_t N, MoeScratch* s) {
  const std::vector<int64_t>& offset = s->offset;
  const int64_t first = FirstActiveExpert(offset, c.n_routed_experts);
  if (first == c.n_routed_experts) return false;
  LinearInput& all = s->all_tokens;
  all.Prepare(x, N, w.experts[first].gate_proj);  // float32 and bf16 forms return at once
  if (all.layout != 1 && all.layout != 2) return false;
  for (int64_t e = first; e < c.n_routed_experts; ++e) {
    const MlpWeights& m = w.experts[e];
    if (offset[e + 1] > offset[e] && !(all.PreparedFor(m.gate_proj) && all.PreparedFor(m.up_proj))) return false;
  }
  for (int64_t e = 0; e < c.n_routed_experts; ++e)
    for (size_t j = 0; j < s->per_expert[e].size(); ++j)
      s->picked_tokens[offset[e] + static_cast<int64_t>(j)] = s->per_expert[e][j].first;
  s->inputs.resize(static_cast<size_t>(c.n_routed_experts) + 1);
  ParallelFor(c.n_routed_experts, 1, [&](int64_t e0, int64_t e1) {
    for (int64_t e = e0; e < e1; ++e)
      if (offset[e + 1] > offset[e])
        s->inputs[1 + e].PrepareRowsOf(all, s->picked_tokens.data() + offset[e], offset[e + 1] - offset[e]);
  });
  return true;
}

}  // namespace

void MoeScratch::Reserve(const ModelConfig& c, int64_t max_tokens) {
  const int64_t D = c.hidden_size, k = c.num_experts_per_tok;
  // Every (token, expert) pick gets its own rows, then the shared experts' N rows.
  const int64_t picks = max_tokens * k;
  const int64_t width = picks * c.moe_intermediate_size + max_tokens * c.n_shared_experts * c.moe_intermediate_size;
  router.Reserve(c, max_tokens);
  indices.resize(static_cast<size_t>(picks));
  picked_rows.resize(static_cast<size_t>(picks));
  picked_tokens.resize(static_cast<size_t>(picks));
  weights.resize(static_cast<size_t>(picks));
  gathered.resize(static_cast<size_t>(picks * D));
  expert_out.resize(static_cast<size_t>(picks * D));
  gate_buf.resize(static_cast<size_t>(width));
  up_buf.resize(static_cast<size_t>(width));
  per_expert.resize(static_cast<size_t>(c.n_routed_experts));
  offset.reserve(static_cast<size_t>(c.n_routed_experts) + 1);
  for (auto& v : per_expert) v.reserve(static_cast<size_t>(max_tokens));
}

void MoeForward(const ModelConfig& c, const MoeWeights& w, const float* x, int64_t N, MoeScratch* s, float* out) {
  const int64_t D = c.hidden_size, k = c.num_experts_per_tok, I = c.moe_intermediate_size;
  RouteTokens(c, w, x, N, &s->router, s->indices.data(), s->weights.data());
  for (auto& v : s->per_expert) v.clear();
  for (int64_t t = 0; t < N; ++t)
    for (int64_t i = 0; i < k; ++i) s->per_expert[s->indices[t * k + i]].push_back({static_cast<int32_t>(t), s->weights[t * k + i]});

  std::vector<int64_t>& offset = s->offset;
  std::vector<LinearJob>& jobs = s->jobs;
  offset.assign(static_cast<size_t>(c.n_routed_experts) + 1, 0);
  for (int64_t e = 0; e < c.n_routed_experts; ++e)
    offset[e + 1] = offset[e] + static_cast<int64_t>(s->per_expert[e].size());
  const int64_t picks = offset[c.n_routed_experts];
  const bool shared = !w.shared.gate_proj.empty();
  const int64_t Ws = shared ? w.shared.gate_proj.rows() : 0;
  float* shared_gate = s->gate_buf.data() + picks * I;
  float* shared_up = s->up_buf.data() + picks * I;

  // gate and up of every active expert (and the shared ones) in one parallel region. One token
  // (a decode step) is every active expert's one row: x itself, prepared once, for the shared
  // experts and the routed ones unless their formats differ (copying it for each expert and
  // preparing each copy in a parallel region had taken ~8 us a layer, ~1% of a bench-v3-mini
  // INT4 token). Routed experts of another format than the first active one's redo it.
  const bool one_token = N == 1;
  const LinearInput* routed_input = nullptr;  // one token: every routed expert's
  bool shared_from_all = false;  // the shared experts take s->all_tokens, not inputs[0]
  if (one_token) {
    if (s->inputs.size() < 2) s->inputs.resize(2);
    if (shared) s->inputs[0].Prepare(x, N, w.shared.gate_proj);
    const int64_t first = FirstActiveExpert(offset, c.n_routed_experts);
    if (first < c.n_routed_experts) {
      const WeightMatrix& gate = w.experts[first].gate_proj;
      if (shared && s->inputs[0].PreparedFor(gate)) {
        routed_input = &s->inputs[0];
      } else {
        s->inputs[1].Prepare(x, N, gate);
        routed_input = &s->inputs[1];
      }
    }
  } else if (PrepareQuantizedOnce(c, w, x, N, s)) {
    shared_from_all = shared && s->all_tokens.PreparedFor(w.shared.gate_proj);  // x in the form it needs
    if (shared && !shared_from_all) s->inputs[0].Prepare(x, N, w.shared.gate_proj);
  } else {
    const int64_t column_grain = picks >= kParallelPicks ? 8 : D;
    ParallelFor(D, column_grain, [&](int64_t d0, int64_t d1) {
      for (int64_t e = 0; e < c.n_routed_experts; ++e)
        for (size_t j = 0; j < s->per_expert[e].size(); ++j)
          std::memcpy(s->gathered.data() + (offset[e] + static_cast<int64_t>(j)) * D + d0,
                      x + s->per_expert[e][j].first * D + d0, static_cast<size_t>(d1 - d0) * sizeof(float));
    });
    PrepareInputs(w, offset, x, N, s->gathered.data(), D, &MlpWeights::gate_proj, s);
  }
  jobs.clear();
  // Taken here, after the branches above may have grown s->inputs.
  const LinearInput* shared_input = shared_from_all ? &s->all_tokens : &s->inputs[0];
  if (shared) {
    jobs.push_back({shared_input, &w.shared.gate_proj, shared_gate});
    jobs.push_back({shared_input, &w.shared.up_proj, shared_up});
  }
  for (int64_t e = 0; e < c.n_routed_experts; ++e) {
    if (offset[e + 1] == offset[e]) continue;
    const LinearInput* in = one_token ? routed_input : &s->inputs[1 + e];
    jobs.push_back({in, &w.experts[e].gate_proj, s->gate_buf.data() + offset[e] * I});
    jobs.push_back({in, &w.experts[e].up_proj, s->up_buf.data() + offset[e] * I});
  }
  LinearJobs(jobs, kRowBlock);
  SiluMul(s->gate_buf.data(), s->up_buf.data(), picks * I);
  if (shared) SiluMul(shared_gate, shared_up, N * Ws);

  // down of every active expert; the shared experts write straight into out.
  PrepareInputs(w, offset, shared_gate, N, s->gate_buf.data(), I, &MlpWeights::down_proj, s);
  jobs.clear();
  if (shared) jobs.push_back({&s->inputs[0], &w.shared.down_proj, out});
  for (int64_t e = 0; e < c.n_routed_experts; ++e) {
    if (offset[e + 1] == offset[e]) continue;
    jobs.push_back({&s->inputs[1 + e], &w.experts[e].down_proj, s->expert_out.data() + offset[e] * D});
  }
  if (!shared) std::memset(out, 0, static_cast<size_t>(N * D) * sizeof(float));
  LinearJobs(jobs, kRowBlock);

  // Weighted sum in expert order, as the reference adds them, a token at a time: its row of out
  // stays in L1 for its k rows (walking experts, each row came back k times from L3 or DRAM).
  // AddScaled, eight at a time: the plain loop here (-O2 does not vectorize it) took ~1.8 ms of
  // a 512-token prefill's MoE layer.
  std::vector<std::pair<int64_t, float>>& rows = s->picked_rows;
  std::vector<int64_t>& filled = s->picks_placed;
  filled.assign(static_cast<size_t>(N), 0);
  for (int64_t e = 0; e < c.n_routed_experts; ++e)
    for (size_t j = 0; j < s->per_expert[e].size(); ++j) {
      const int64_t t = s->per_expert[e][j].first;
      rows[t * k + filled[t]++] = {offset[e] + static_cast<int64_t>(j), s->per_expert[e][j].second};
    }
  ParallelFor(N, picks >= kParallelPicks ? 1 : N, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      float* dst = out + t * D;
      for (int64_t i = 0; i < k; ++i) AddScaled(dst, s->expert_out.data() + rows[t * k + i].first * D, rows[t * k + i].second, D);
    }
  });
}

}  // namespace dsv3
