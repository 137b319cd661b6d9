#include "engine/model/mla.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "engine/base/threads.h"
#include "engine/kernels/ops.h"

namespace dsv3 {

namespace {

// The per-head products with kv_b, as the multi-query kernels (ops.h) spell them: W_uk folded
// into T queries, q_abs[T, C] = q_nope[T, nope] · W_uk[nope, C] (a weighted sum of W_uk's rows),
// and W_uv applied to T latent outputs, o[T, vd] = o_latent[T, C] · W_uv[vd, C]ᵀ (scores
// against W_uv's rows).
void AbsorbUk(const float* q_nope, int64_t T, int64_t ldq, const float* w_uk, int64_t nope, int64_t C,
              float* q_abs) {
  MultiQueryWeightedSum(q_nope, T, ldq, w_uk, nope, C, q_abs);
}
void ApplyUv(const float* o_latent, int64_t T, int64_t C, const float* w_uv, int64_t vd, float* o, int64_t ldo) {
  MultiQueryScores(o_latent, T, C, w_uv, vd, C, o, ldo, false);
}

// Causal (and optionally sliding-window) mask with a row softmax of scale·scores in float32.
// Rows are the chunk's T queries (positions start_pos..start_pos+T-1), repeated once per
// stacked head. scores is [rows, S] row-major.
void MaskedSoftmax(float* scores, int64_t rows, int64_t S, int64_t start_pos, int64_t T, int64_t window,
                   float scale) {
  for (int64_t t = 0; t < rows; ++t) {
    const int64_t pos = start_pos + t % T;
    const int64_t lo = window > 0 ? std::max<int64_t>(0, pos - window + 1) : 0;
    float* row = scores + t * S;
    // Masked positions get probability exactly 0 (not -inf logits: they are multiplied next).
    for (int64_t s = 0; s < lo; ++s) row[s] = 0.0f;
    for (int64_t s = pos + 1; s < S; ++s) row[s] = 0.0f;
    SoftmaxInPlace(row + lo, pos + 1 - lo, scale);
  }
}

// One-query chunks (decode) split the cache, not the heads, between jobs: a job is a span of
// one chunk's cached positions with all H heads stacked, so each cached row is read once per
// token (with the heads split, every thread streamed the whole cache: at depth that, not the
// arithmetic, was decode attention's cost; a lone span's heads go as two groups, HeadGroups
// below, since its few rows stay in cache). A span leaves each head a partial softmax: its
// largest score m, l = Σ exp(score - m) and o = Σ exp(score - m) · latent. The partials are
// merged in span order, and the spans depend only on the cache length and the head count, so
// the result depends neither on the thread count nor on the batch.
// Spans hold >= 128 positions; their number is capped so that a chunk's partials stay near
// 0.8 MB for bench-v3-mini (12 heads, C 256: 64 spans) and ~4 MB for DeepSeek-V3 (128 heads,
// C 512: 16 spans), whatever the batch.
constexpr int64_t kMinSpanRows = 128;

// Prefill's expanded form: a block of query rows holds about this many scores (256 KB, half
// of a Zen 3 core's L2), and the keys and values are made this many latent rows at a time.
constexpr int64_t kScoreBlockFloats = 64 * 1024;
constexpr int64_t kLatentRowBlock = 96;

// Query rows per block of the expanded form at S cached positions (a multiple of the
// MatMul tile's 6 rows).
int64_t ScoreBlockRows(int64_t S) { return std::clamp<int64_t>((kScoreBlockFloats / S) / 6 * 6, 6, 96); }

int64_t SpanCount(int64_t S, int64_t H) {
  const int64_t max_spans = std::clamp<int64_t>(2048 / std::max<int64_t>(H, 1), 4, 64);
  return std::min<int64_t>(max_spans, (S + kMinSpanRows - 1) / kMinSpanRows);
}

// Below kMinSpanRows + 1 cached positions a chunk has one span, which ran on one thread while
// the other waited (bench-v3-mini, depth < 128: ~13 us a layer). Its heads then go as two
// groups, when the halves keep every query's bits: the multi-query kernels (AVX2, AVX-512)
// give a query the same bits whatever else shares its call, except across 16 queries, where
// the scores take another path; so H < 16 or H >= 32 (DeepSeek-V3's 128: 64 + 64). Like the
// spans, the groups depend only on the cache length and the head count.
int64_t HeadGroups(int64_t spans, int64_t H) { return spans == 1 && H > 1 && (H < 16 || H >= 32) ? 2 : 1; }

// Head h of n one-query chunks: each one's absorbed query (W_uk folded into q_nope, from kv_b as
// stored) and its rope part, into decode_q's [H, C] then [H, R] of chunk i. The chunks' queries
// go in one call, so W_uk's rows are converted once for the batch (per chunk, a decode batch of
// eight sequences converted them eight times); each query gets its own call's bits.
void AbsorbHeads(const ModelConfig& c, const float* q, const SeqChunk* const* chunks, int64_t n, int64_t h,
                 const WeightMatrix& kv_b, float* decode_q) {
  const int64_t H = c.num_attention_heads, nope = c.qk_nope_head_dim, R = c.qk_rope_head_dim;
  const int64_t qk = c.qk_head_dim(), vd = c.v_head_dim, C = c.kv_lora_rank;
  const auto q_of = [&](int64_t i) { return q + chunks[i]->offset * H * qk + h * qk; };
  thread_local std::vector<float> q_nope;  // [n, nope]: the chunks' rows, wherever they are
  if (n > 1) {
    q_nope.resize(static_cast<size_t>(n * nope));
    for (int64_t i = 0; i < n; ++i) std::memcpy(q_nope.data() + i * nope, q_of(i), static_cast<size_t>(nope) * sizeof(float));
  }
  // AbsorbUk, from kv_b as stored.
  WeightRowsWeightedSum(n > 1 ? q_nope.data() : q_of(0), n, nope, kv_b, h * (nope + vd), nope, decode_q + h * C,
                        H * (C + R));
  for (int64_t i = 0; i < n; ++i)
    std::memcpy(decode_q + i * H * (C + R) + H * C + h * R, q_of(i) + nope, static_cast<size_t>(R) * sizeof(float));
}

// Span k of `spans` over chunk ch's cached positions, heads [h0, h1) (its absorbed queries at
// qa): the partial softmax of each head into part_k (m[H], l[H], o[H, C]). Returns its FLOPs.
int64_t AttendSpan(const ModelConfig& c, const SeqChunk& ch, int64_t layer, LatentKvCache* cache,
                   const float* qa, int64_t k, int64_t spans, int64_t h0, int64_t h1, float scale, float* part_k) {
  const int64_t H = c.num_attention_heads, R = c.qk_rope_head_dim, C = c.kv_lora_rank, nh = h1 - h0;
  thread_local std::vector<float> scores;
  const int64_t S = ch.start_pos + 1, a = S * k / spans, len = S * (k + 1) / spans - a;
  // The sliding window hides the positions before lo (probability exactly 0).
  const int64_t lo = c.sliding_window > 0 ? std::max<int64_t>(0, ch.start_pos - c.sliding_window + 1) : 0;
  float *m = part_k, *l = part_k + H;
  scores.resize(static_cast<size_t>(nh * len));
  const int64_t hidden = std::clamp<int64_t>(lo - a, 0, len);  // the span's positions before lo
  // latents and k_pe: the span's rows, float32 or (a bf16 cache's, as stored) bfloat16.
  const auto attend = [&](const auto* latents, const auto* k_pe) {
    MultiQueryScoresTwoPart(qa + h0 * C, C, latents, C, qa + H * C + h0 * R, R, k_pe, R, nh, len, scores.data(), len);
    for (int64_t h = h0; h < h1; ++h) {
      float* row = scores.data() + (h - h0) * len;
      std::fill(row, row + hidden, -INFINITY);
      m[h] = ScaleAndMax(row + hidden, len - hidden, scale);
      if (m[h] == -INFINITY) {  // the whole span is outside the window
        std::fill(row, row + len, 0.0f);
        l[h] = 0.0f;
      } else {
        l[h] = ExpShiftedSum(row, len, m[h]);
      }
    }
    MultiQueryWeightedSum(scores.data(), nh, len, latents, len, C, part_k + 2 * H + h0 * C);
  };
  if (cache->dtype() == KvCacheDType::kBF16) {
    attend(cache->kv_bf16(layer, ch.slot) + a * C, cache->pe_bf16(layer, ch.slot) + a * R);
  } else {
    attend(cache->kv(layer, ch.slot) + a * C, cache->pe(layer, ch.slot) + a * R);
  }
  return 2 * nh * len * (2 * C + R);
}

// Head h of n one-query chunks: chunk i's partials (spans first_span[i] .. first_span[i + 1] of
// parts, each `part` floats) merged in order, then W_uv for the n chunks in one call (its rows
// converted once for the batch, each chunk's bits its own call's), into the chunk's row of attn.
void MergeHeads(const ModelConfig& c, const float* parts, const int64_t* first_span, const SeqChunk* const* chunks,
                int64_t n, int64_t h, const WeightMatrix& kv_b, float* attn) {
  const int64_t H = c.num_attention_heads, nope = c.qk_nope_head_dim, vd = c.v_head_dim, C = c.kv_lora_rank;
  const int64_t part = H * (C + 2);
  thread_local std::vector<float> merged, o;  // [n, C], [n, vd]
  merged.assign(static_cast<size_t>(n * C), 0.0f);
  for (int64_t i = 0; i < n; ++i) {
    const float* pi = parts + first_span[i] * part;
    const int64_t spans = first_span[i + 1] - first_span[i];
    float* mi = merged.data() + i * C;
    float top = -INFINITY;
    // While the maxima are read, each span's output row for this head is asked for: half of
    // them come from the other core, which computed those spans, and the merge below had
    // waited on them one by one (depth 4096, INT4-h, four pairs: 46-52 -> 40-43 us a layer).
    for (int64_t k = 0; k < spans; ++k) {
      top = std::max(top, pi[k * part + h]);
      for (int64_t x = 0; x < C; x += 16) __builtin_prefetch(pi + k * part + 2 * H + h * C + x, 0, 3);
    }
    float sum = 0.0f;
    for (int64_t k = 0; k < spans; ++k) {
      const float* pk = pi + k * part;
      if (pk[h] == -INFINITY) continue;  // the whole span is outside the window
      const float f = std::exp(pk[h] - top);
      sum += f * pk[H + h];
      // Eight at a time on the AVX2 path, each product rounded before its sum as this loop
      // had it: at depth 4096 (32 spans a head) the merge took ~12 us a layer more one by one.
      AddScaled(mi, pk + 2 * H + h * C, f, C);
    }
    for (int64_t x = 0; x < C; ++x) mi[x] /= sum;
  }
  // One chunk writes its row in place; several go through o, since their rows need not be
  // evenly spaced.
  const auto out_of = [&](int64_t i) { return attn + chunks[i]->offset * H * vd + h * vd; };
  if (n > 1) o.resize(static_cast<size_t>(n * vd));
  WeightRowScores(merged.data(), n, C, kv_b, h * (nope + vd) + nope, vd, n > 1 ? o.data() : out_of(0), vd);
  for (int64_t i = 0; n > 1 && i < n; ++i)
    std::memcpy(out_of(i), o.data() + i * vd, static_cast<size_t>(vd) * sizeof(float));
}

void AttendOneQueryChunks(const ModelConfig& c, const float* q, const std::vector<const SeqChunk*>& chunks,
                          int64_t layer, LatentKvCache* cache, const WeightMatrix& kv_b, float scale, MlaScratch* s,
                          float* attn, bool absorbed = false) {
  const int64_t H = c.num_attention_heads, R = c.qk_rope_head_dim;
  const int64_t vd = c.v_head_dim, C = c.kv_lora_rank, n = static_cast<int64_t>(chunks.size());
  const int64_t part = H * (C + 2);  // per span: m[H], l[H], o[H, C]
  // Absorbed queries [H, C] then rope queries [H, R], per chunk.
  if (!absorbed) {
    s->decode_q.resize(static_cast<size_t>(n * H * (C + R)));
    ParallelFor(H, 1, [&](int64_t h0, int64_t h1) {
      for (int64_t h = h0; h < h1; ++h) AbsorbHeads(c, q, chunks.data(), n, h, kv_b, s->decode_q.data());
    });
  }
  // The partials of every span, in balanced pieces: at depth each thread walks many spans, and
  // a thread slowed by a neighbour on a shared machine no longer holds the other at the join
  // (a span's partial lands in its own slot, whichever thread computes it). Jobs are (span,
  // head group), a chunk's spans in order, each span's groups (HeadGroups) in turn.
  std::vector<int64_t> first_span(static_cast<size_t>(n + 1), 0), first_job(static_cast<size_t>(n + 1), 0);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t spans = SpanCount(chunks[i]->start_pos + 1, H);
    first_span[i + 1] = first_span[i] + spans;
    first_job[i + 1] = first_job[i] + spans * HeadGroups(spans, H);
  }
  s->decode_parts.resize(static_cast<size_t>(first_span[n] * part));
  ParallelForBalanced(first_job[n], 1, [&](int64_t j0, int64_t j1) {
    int64_t flops = 0;  // the scores and weighted sums, for `dsv3 bench` (CountFlops)
    for (int64_t j = j0; j < j1; ++j) {
      const int64_t i = std::upper_bound(first_job.begin(), first_job.end(), j) - first_job.begin() - 1;
      const int64_t spans = first_span[i + 1] - first_span[i], groups = HeadGroups(spans, H);
      const int64_t k = (j - first_job[i]) / groups, g = (j - first_job[i]) % groups;
      flops += AttendSpan(c, *chunks[i], layer, cache, s->decode_q.data() + i * H * (C + R), k, spans, H * g / groups,
                          H * (g + 1) / groups, scale, s->decode_parts.data() + (first_span[i] + k) * part);
    }
    CountFlops(static_cast<uint64_t>(flops));
  });
  // Each head: every chunk's spans merged in order, then W_uv.
  ParallelFor(H, 1, [&](int64_t h0, int64_t h1) {
    for (int64_t h = h0; h < h1; ++h)
      MergeHeads(c, s->decode_parts.data(), first_span.data(), chunks.data(), n, h, kv_b, attn);
  });
}

// A decode step of one sequence (one token, absorbed, q through q_a and q_b), from the normed
// q_a and the cached latent on: each thread takes a group of heads through its rows of q_b, rope,
// W_uk and, while the cache is one span, the scores, the softmax and W_uv. One parallel region
// where the general path takes four (q_b, W_uk, the spans, the merge) with rope between them on
// one thread; each head's products are the general path's calls, so the bits are its bits.
// Each group's kv_b rows (W_uk and W_uv) are asked into L2 as it starts: q_b's stream hides
// their misses, which the weighted sums and scores over them had waited on head by head.
void DecodeOneQuery(const ModelConfig& c, const MlaWeights& w, int64_t layer, const SeqChunk& ch,
                    const RopeTable& rope, LatentKvCache* cache, float scale, MlaScratch* s, float* q, float* attn) {
  const int64_t H = c.num_attention_heads, nope = c.qk_nope_head_dim, R = c.qk_rope_head_dim;
  const int64_t qk = c.qk_head_dim(), vd = c.v_head_dim, C = c.kv_lora_rank, pos = ch.start_pos;
  const int64_t spans = SpanCount(pos + 1, H);
  // One span: its head groups are HeadGroups' (the span's bits depend on them); more: the spans
  // and the merge run after this region as in AttendOneQueryChunks.
  const bool whole = spans == 1 && HeadGroups(1, H) == 2;
  const int64_t groups = whole ? 2 : std::clamp<int64_t>(NumThreads(), 1, H);
  s->q_b_in.Prepare(s->q_a.data(), 1, w.q_b_proj);
  s->decode_q.resize(static_cast<size_t>(H * (C + R)));
  if (whole) s->decode_parts.resize(static_cast<size_t>(H * (C + 2)));
  const SeqChunk* const chunk = &ch;
  const int64_t one_span[2] = {0, 1};
  ParallelFor(groups, 1, [&](int64_t g0, int64_t g1) {
    int64_t flops = 0;
    for (int64_t g = g0; g < g1; ++g) {
      const int64_t h0 = H * g / groups, h1 = H * (g + 1) / groups;
      FetchWeightRows(w.kv_b_proj, h0 * (nope + vd), h1 * (nope + vd));
      LinearRows(s->q_b_in, w.q_b_proj, h0 * qk, h1 * qk, q, H * qk, false);
      for (int64_t h = h0; h < h1; ++h) {
        rope.Apply(q + h * qk + nope, pos);
        AbsorbHeads(c, q, &chunk, 1, h, w.kv_b_proj, s->decode_q.data());
      }
      if (!whole) continue;
      flops += AttendSpan(c, ch, layer, cache, s->decode_q.data(), 0, 1, h0, h1, scale, s->decode_parts.data());
      for (int64_t h = h0; h < h1; ++h) MergeHeads(c, s->decode_parts.data(), one_span, &chunk, 1, h, w.kv_b_proj, attn);
    }
    if (whole) CountFlops(static_cast<uint64_t>(flops));
  });
  if (!whole) AttendOneQueryChunks(c, q, {&ch}, layer, cache, w.kv_b_proj, scale, s, attn, /*absorbed=*/true);
}

}  // namespace

// The form a chunk of T queries over S keys uses: the forced one, or for kAuto the one with
// fewer multiply-adds per head (absorbed: fold W_uk into T queries, scores and weighted sum
// over C-wide latents, W_uv on T outputs; naive: expand S keys and values, then attention
// at the head widths). A single query is always absorbed: it reads kv_b where it is stored,
// while the expanded form needs kv_b in float32 (a whole matrix converted per layer when the
// checkpoint stores it quantized: ~0.5 ms a layer for the first token of a sequence, where the
// FLOP counts, S = 1, differ by 2%).
AttnImpl ChooseAttnForm(const ModelConfig& c, AttnImpl impl, int64_t T, int64_t S) {
  const int64_t nope = c.qk_nope_head_dim, R = c.qk_rope_head_dim, vd = c.v_head_dim, C = c.kv_lora_rank;
  if (impl != AttnImpl::kAuto) return impl;
  if (T == 1) return AttnImpl::kAbsorb;
  const int64_t absorbed = T * nope * C + T * S * (C + R) + T * S * C + T * C * vd;
  const int64_t naive = S * C * (nope + vd) + T * S * (nope + R) + T * S * vd;
  return naive < absorbed ? AttnImpl::kNaive : AttnImpl::kAbsorb;
}

void MlaScratch::Reserve(const ModelConfig& c, int64_t max_tokens) {
  const int64_t H = c.num_attention_heads;
  q_a.resize(static_cast<size_t>(max_tokens * std::max<int64_t>(c.q_lora_rank, 1)));
  q.resize(static_cast<size_t>(max_tokens * H * c.qk_head_dim()));
  kv_a.resize(static_cast<size_t>(max_tokens * (c.kv_lora_rank + c.qk_rope_head_dim)));
  attn_out.resize(static_cast<size_t>(max_tokens * H * c.v_head_dim));
  kv_b_f32.resize(static_cast<size_t>(H * (c.qk_nope_head_dim + c.v_head_dim) * c.kv_lora_rank));
}

void MlaForward(const ModelConfig& c, const MlaWeights& w, int64_t layer, const float* x,
                const std::vector<SeqChunk>& chunks, int64_t N, const RopeTable& rope, LatentKvCache* cache,
                AttnImpl impl, MlaScratch* s, float* out, const float* kv_b_f32) {
  const int64_t H = c.num_attention_heads, nope = c.qk_nope_head_dim, R = c.qk_rope_head_dim;
  const int64_t qk = c.qk_head_dim(), vd = c.v_head_dim, C = c.kv_lora_rank;
  const float eps = static_cast<float>(c.rms_norm_eps);

  // Queries: q = q_b(norm(q_a(x))) or q_proj(x); then rope on each head's tail. Keys/values:
  // [latent | k_pe] = kv_a(x); the latent is normed, k_pe is rotated, not normed. The two
  // products of x go together.
  float* q = s->q.data();
  float* kv_a = s->kv_a.data();
  // A decode step of one sequence (its token row 0) goes through DecodeOneQuery after q_a and
  // kv_a: q_b, the query's rope and the attention in one region per group of heads.
  const bool one_token = N == 1 && c.q_lora_rank > 0 && chunks.size() == 1 && chunks[0].n == 1 &&
                         ChooseAttnForm(c, impl, 1, chunks[0].start_pos + 1) == AttnImpl::kAbsorb;
  if (c.q_lora_rank > 0) {
    LinearSameInput(x, N, {{&w.q_a_proj, s->q_a.data()}, {&w.kv_a_proj_with_mqa, kv_a}});
    RmsNorm(s->q_a.data(), w.q_a_layernorm, N, c.q_lora_rank, eps, s->q_a.data());
    if (!one_token) Linear(s->q_a.data(), N, w.q_b_proj, q);
  } else {
    LinearSameInput(x, N, {{&w.q_proj, q}, {&w.kv_a_proj_with_mqa, kv_a}});
  }
  // A chunk's tokens in parallel (a 512-token prefill's took 0.4-0.8 ms a layer on one
  // thread); a decode step's one token inline.
  constexpr int64_t kTokensPerChunk = 32;
  for (const SeqChunk& ch : chunks) {
    ParallelFor(ch.n, kTokensPerChunk, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t row = ch.offset + t, pos = ch.start_pos + t;
        float* kvr = kv_a + row * (C + R);
        RmsNorm(kvr, w.kv_a_layernorm, 1, C, eps, kvr);
        rope.Apply(kvr + C, pos);
        cache->Store(layer, ch.slot, pos, kvr, kvr + C);
        if (one_token) continue;  // q comes later (DecodeOneQuery)
        for (int64_t h = 0; h < H; ++h) rope.Apply(q + row * H * qk + h * qk + nope, pos);
      }
    });
  }

  const float scale = static_cast<float>(c.SoftmaxScale());
  float* attn = s->attn_out.data();
  if (one_token) {
    DecodeOneQuery(c, w, layer, chunks[0], rope, cache, scale, s, q, attn);
    Linear(attn, N, w.o_proj, out);
    return;
  }
  std::vector<const SeqChunk*> one_query, others;
  for (const SeqChunk& ch : chunks)
    (ch.n == 1 && ChooseAttnForm(c, impl, 1, ch.start_pos + 1) == AttnImpl::kAbsorb ? one_query : others).push_back(&ch);
  // Decode reads kv_b where it is stored; chunks of several queries read it in float32.
  if (!one_query.empty()) AttendOneQueryChunks(c, q, one_query, layer, cache, w.kv_b_proj, scale, s, attn);
  // kv_b per head: rows [h*(nope+v), h*(nope+v)+nope) are W_uk, the next v rows W_uv.
  const float* wkv_b = w.kv_b_proj.w.dtype == DType::kF32 ? w.kv_b_proj.w.f32() : kv_b_f32;
  if (wkv_b == nullptr && !others.empty()) {
    DequantizeRows(w.kv_b_proj, 0, w.kv_b_proj.rows(), s->kv_b_f32.data());
    wkv_b = s->kv_b_f32.data();
  }
  // Jobs are (chunk, group of heads), one group per thread. In the absorbed form a group's
  // heads are stacked so that each cached latent row is read once for all of them (at depth
  // the latent cache, not the weights, is what decode attention streams).
  const int64_t groups = std::min<int64_t>(H, std::max(1, NumThreads()));
  const int64_t jobs = static_cast<int64_t>(others.size()) * groups;
  // Each chunk's cached rows [S, C] and [S, R] as float32: a bf16 cache's widened once here, not
  // by every job (a buffer a thread would be 302 MB for DeepSeek-V3 at 128K positions).
  std::vector<const float*> latents_of(others.size()), k_pe_of(others.size());
  if (s->wide_kv.size() < others.size()) {
    s->wide_kv.resize(others.size());
    s->wide_pe.resize(others.size());
  }
  for (size_t i = 0; i < others.size(); ++i) {
    const int64_t S = others[i]->start_pos + others[i]->n;
    latents_of[i] = cache->KvRows(layer, others[i]->slot, 0, S, &s->wide_kv[i]);
    k_pe_of[i] = cache->PeRows(layer, others[i]->slot, 0, S, &s->wide_pe[i]);
  }
  ParallelFor(jobs, 1, [&](int64_t j0, int64_t j1) {
    // The products' FLOPs as they run, in the form each chunk takes, for `dsv3 bench`'s
    // roofline (CountFlops; Linear counts the projections itself).
    int64_t flops = 0;
    for (int64_t j = j0; j < j1; ++j) {
      const SeqChunk& ch = *others[j / groups];
      const int64_t g = j % groups, h0 = H * g / groups, h1 = H * (g + 1) / groups, nh = h1 - h0;
      const int64_t T = ch.n, S = ch.start_pos + ch.n;
      const float* latents = latents_of[j / groups];  // [S, C]
      const float* k_pe = k_pe_of[j / groups];        // [S, R]
      const auto q_head = [&](int64_t h) { return q + ch.offset * H * qk + h * qk; };  // [T, qk], stride H·qk
      const auto w_uk = [&](int64_t h) { return wkv_b + h * (nope + vd) * C; };           // [nope, C]
      const auto w_uv = [&](int64_t h) { return wkv_b + (h * (nope + vd) + nope) * C; }; // [vd, C]
      if (ChooseAttnForm(c, impl, T, S) == AttnImpl::kAbsorb) {
        // Per-thread buffers that only grow: decode runs this for every layer of every token.
        thread_local std::vector<float> buf;
        const int64_t rows = nh * T;  // head h0+i's queries are rows [i*T, (i+1)*T)
        buf.resize(static_cast<size_t>(rows * (2 * C + R + S)));
        float* q_abs = buf.data();            // [rows, C]
        float* o_latent = q_abs + rows * C;   // [rows, C]
        float* q_rot = o_latent + rows * C;   // [rows, R]
        float* scores = q_rot + rows * R;     // [rows, S]
        for (int64_t i = 0; i < nh; ++i) {
          AbsorbUk(q_head(h0 + i), T, H * qk, w_uk(h0 + i), nope, C, q_abs + i * T * C);
          for (int64_t t = 0; t < T; ++t)
            std::memcpy(q_rot + (i * T + t) * R, q_head(h0 + i) + t * H * qk + nope, R * sizeof(float));
        }
        MultiQueryScoresTwoPart(q_abs, C, latents, C, q_rot, R, k_pe, R, rows, S, scores, S);
        MaskedSoftmax(scores, rows, S, ch.start_pos, T, c.sliding_window, scale);
        MultiQueryWeightedSum(scores, rows, S, latents, S, C, o_latent);
        for (int64_t i = 0; i < nh; ++i)
          ApplyUv(o_latent + i * T * C, T, C, w_uv(h0 + i), vd, attn + ch.offset * H * vd + (h0 + i) * vd, H * vd);
        flops += 2 * nh * T * (nope * C + S * (2 * C + R) + C * vd);
      } else {
        // Keys and values expanded per head, then attention at the head widths, every product
        // a MatMul (ops.h) with its right operand packed once per head: keysᵀ [qk, S] (its rope
        // rows, the same for every head, packed once per job) and values [S, vd]. They are made
        // and packed a block of latent rows at a time, the block's [k_nope | v] still in cache
        // when packed. The query rows go in blocks whose scores stay in L2 between the product
        // that writes them, the softmax and the product that reads them (the whole [T, S]
        // matrix went out to memory and back), each block over the positions its last query sees.
        struct Scratch {
          std::vector<float> kv, scores;
          MatMulRhs w_kv, keys, vals;
        };
        thread_local Scratch z;
        const int64_t width = nope + vd;  // z.kv rows: [k_nope | v]
        z.kv.resize(static_cast<size_t>(kLatentRowBlock * width));
        SizeMatMulRhs(qk, S, &z.keys);
        SizeMatMulRhs(S, vd, &z.vals);
        PackMatMulRhsBlock(k_pe, R, /*transposed=*/true, nope, qk, 0, S, &z.keys);
        const int64_t block = ScoreBlockRows(S);
        z.scores.resize(static_cast<size_t>(std::min(block, T) * S));
        for (int64_t h = h0; h < h1; ++h) {
          // [W_uk; W_uv]ᵀ [C, nope + vd]: the head's rows of kv_b, W_uk's then W_uv's.
          PackMatMulRhs(w_uk(h), C, nope + vd, C, /*transposed=*/true, &z.w_kv);
          for (int64_t s0 = 0; s0 < S; s0 += kLatentRowBlock) {
            const int64_t rows = std::min(kLatentRowBlock, S - s0);
            MatMul(latents + s0 * C, rows, C, C, z.w_kv, nope + vd, z.kv.data(), width);
            PackMatMulRhsBlock(z.kv.data(), width, /*transposed=*/true, 0, nope, s0, s0 + rows, &z.keys);
            PackMatMulRhsBlock(z.kv.data() + nope, width, /*transposed=*/false, s0, s0 + rows, 0, vd, &z.vals);
          }
          flops += 2 * S * C * (nope + vd);
          for (int64_t t0 = 0; t0 < T; t0 += block) {
            const int64_t rows = std::min(block, T - t0), seen = ch.start_pos + t0 + rows;
            float* scores = z.scores.data();  // [rows, seen]
            MatMul(q_head(h) + t0 * H * qk, rows, qk, H * qk, z.keys, seen, scores, seen);
            MaskedSoftmax(scores, rows, seen, ch.start_pos + t0, rows, c.sliding_window, scale);
            MatMul(scores, rows, seen, seen, z.vals, vd, attn + (ch.offset + t0) * H * vd + h * vd, H * vd);
            flops += 2 * rows * seen * (qk + vd);
          }
        }
      }
    }
    CountFlops(static_cast<uint64_t>(flops));
  });
  Linear(attn, N, w.o_proj, out);
}

}  // namespace dsv3
