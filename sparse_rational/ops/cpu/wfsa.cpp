// Fused CPU kernel of the rational recurrence (see docs/DESIGN.md, 'The model'), plus-times semiring.
//
// Layout ("flat", as in ops/reference.py): the N states of all WFSAs of a layer are
// numbered s = 0..N-1, WFSA by WFSA; is_first[s] marks each q_1.
//
//   proj  [T, B, 2N]  the input projection x @ [w | v]: proj[..., :N] = x.w, proj[..., N:] = x.v
//                     (any strides with a unit last stride: [B, T, 2N] storage, as the matmul
//                     of batch-first inputs writes it, is read in place)
//   bias  [N]
//   f_s(t) = sigmoid(x_t.v_s + b_s),  u_s(t) = (x_t.w_s) (1 - f_s(t))        (fused here)
//   c_s(t) = f_s(t) c_s(t-1) + u_s(t) p_s(t-1),  p_s = 1 if is_first[s] else c_{s-1}
//   at padding (mask[t, b] false) c(t) = c(t-1).
//
// Readouts (ops/reference.py; R = the real steps of the document, L = |R|), fused into the
// time loop:
//   final  y_s = c_s(T_b)                      the state after the last real step
//   mean   y_s = (1/L) sum_{t in R} c_s(t)      one running sum per state, divided at the end
//   max    y_s = max_{t in R} c_s(t)            a running max and its step a_s (int32 [B, N],
//                                              the first step reaching the max, -1 if L = 0)
// (all 0 for a document without real tokens).
//   steps  (code 3, not a readout of ops/reference.py: the lower layers of a stacked model
//          read every step, c(t) for all t, carried over at padding) forward as final, with
//          the saved states c(0..T-1) giving every step; backward takes G [B, T, N] = dL/dc(t)
//          and injects G(t) at every step, padded or not (at padding c(t) = c(t-1)).
//
// Parallel over the batch (at::parallel_for, i.e. torch's OpenMP pool, so
// torch.set_num_threads applies), SIMD over the states (the float loops; GCC if-converts
// their selects only under -fno-trapping-math, which ops/cpu/__init__.py passes; AVX2 has
// no double -> int64 conversion for the float64 exp). The backward is the adjoint
// recurrence, run backwards in time from the saved states c(0..T-1), with y's gradient
// G = dL/dy injected where y reads c(t):
//
//   g_s(t) += G_s [final: t = T-1] | G_s / L [mean: every real t] | G_s [max: t = a_s]
//             | G_s(t) [steps: every t]
//   g_s(t-1) = f_s(t) g_s(t) + [s+1 in the same WFSA] u_{s+1}(t) g_{s+1}(t)   (real t)
//   du = g p,  df = g c_s(t-1),  d(x.w) = du (1-f),  d(x.v) = d(b) = (df - du x.w) f (1-f)
#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#if defined(__SSE2__)
#include <pmmintrin.h>
#include <xmmintrin.h>
#endif

namespace {

// The readouts, numbered as ops/reference.py READOUTS.
enum Readout : int { kFinal = 0, kMean = 1, kMax = 2, kSteps = 3 };

// Calls fn(std::integral_constant<int, R>) for the runtime readout code: one instantiation
// of each kernel per readout, no branch on it inside the time loop.
template <typename F>
void with_readout(int64_t readout, F&& fn) {
  switch (readout) {
    case kFinal: fn(std::integral_constant<int, kFinal>{}); break;
    case kMean: fn(std::integral_constant<int, kMean>{}); break;
    case kMax: fn(std::integral_constant<int, kMax>{}); break;
    case kSteps: fn(std::integral_constant<int, kSteps>{}); break;
    default: TORCH_CHECK(false, "wfsa_cpu: readout must be 0 (final), 1 (mean), 2 (max) or 3 (steps), got ", readout);
  }
}

// Flush denormals to zero inside the kernels (restored on exit). Gradients decay like a
// product of self-loop weights f < 1 over time and reach the denormal range after a few
// hundred steps; denormal arithmetic is ~100x slower, here and in the matmul downstream.
struct FlushDenormals {
#if defined(__SSE2__)
  unsigned int saved;
  FlushDenormals() : saved(_mm_getcsr()) { _mm_setcsr(saved | 0x8040); }  // FTZ | DAZ
  ~FlushDenormals() { _mm_setcsr(saved); }
#endif
};

// exp(y) for y <= 0 (Cephes range reduction and polynomials), branch-free so that GCC vectorises it.
static inline __attribute__((always_inline)) float exp_nonpos(float y) {
  y = y < -87.0f ? -87.0f : y;
  // round to nearest with the 1.5 * 2^23 trick (std::floor blocks vectorisation under
  // the default -ftrapping-math)
  const float n = (y * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const float r = y - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500E-4f;
  p = p * r + 1.3981999507E-3f;
  p = p * r + 8.3334519073E-3f;
  p = p * r + 4.1665795894E-2f;
  p = p * r + 1.6666665459E-1f;
  p = p * r + 5.0000001201E-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  return p * __builtin_bit_cast(float, bits);
}

static inline __attribute__((always_inline)) double exp_nonpos(double y) {
  y = y < -708.0 ? -708.0 : y;
  const double n = (y * 1.4426950408889634073599 + 6755399441055744.0) - 6755399441055744.0;
  double r = y - n * 6.93145751953125E-1;
  r = r - n * 1.42860682030941723212E-6;
  const double rr = r * r;
  const double px = r * ((1.26177193074810590878E-4 * rr + 3.02994407707441961300E-2) * rr +
                         9.99999999999999999910E-1);
  const double qx = ((3.00198505138664455042E-6 * rr + 2.52448340349684104192E-3) * rr +
                     2.27265548208155028766E-1) * rr + 2.00000000000000000009E0;
  const double e = 1.0 + 2.0 * (px / (qx - px));
  const int64_t bits = (static_cast<int64_t>(n) + 1023) << 52;
  return e * __builtin_bit_cast(double, bits);
}

// f = sigmoid(a) and 1 - f, both without cancellation: with z = exp(-|a|) <= 1,
// f = 1/(1+z), 1-f = z/(1+z) for a >= 0 and the other way round for a < 0.
#define SR_SIGMOID2(a, f, omf)                              \
  const T z_ = exp_nonpos(-std::abs(a));                    \
  const T inv_ = T(1) / (T(1) + z_);                        \
  const T f = (a) >= T(0) ? inv_ : z_ * inv_;               \
  const T omf = (a) >= T(0) ? z_ * inv_ : inv_;

struct Structure {
  // first[s] = 1 for q_1 states; cont[s] = 1 when state s+1 belongs to the WFSA of s.
  template <typename T>
  static void build(const at::Tensor& is_first, int64_t N, std::vector<T>& first,
                    std::vector<T>& cont) {
    auto flags = is_first.to(at::kBool).contiguous();
    const bool* fl = flags.data_ptr<bool>();
    first.assign(N, T(0));
    cont.assign(N + 1, T(0));
    for (int64_t s = 0; s < N; ++s) first[s] = fl[s] ? T(1) : T(0);
    for (int64_t s = 0; s + 1 < N; ++s) cont[s] = fl[s + 1] ? T(0) : T(1);
  }
};

void check_inputs(const at::Tensor& proj, const at::Tensor& bias, const at::Tensor& is_first,
                  const std::optional<at::Tensor>& mask) {
  TORCH_CHECK(proj.device().is_cpu(), "wfsa_cpu: proj must be a CPU tensor");
  TORCH_CHECK(proj.dim() == 3 && proj.size(2) % 2 == 0, "wfsa_cpu: proj must be [T, B, 2N]");
  const int64_t N = proj.size(2) / 2;
  TORCH_CHECK(bias.dim() == 1 && bias.size(0) == N, "wfsa_cpu: bias must be [N]");
  TORCH_CHECK(bias.scalar_type() == proj.scalar_type(), "wfsa_cpu: bias dtype != proj dtype");
  TORCH_CHECK(is_first.dim() == 1 && is_first.size(0) == N, "wfsa_cpu: is_first must be [N]");
  TORCH_CHECK(N == 0 || is_first.to(at::kBool)[0].item<bool>(),
              "wfsa_cpu: state 0 must be the first state of its WFSA");
  if (mask.has_value() && mask->defined()) {
    TORCH_CHECK(mask->dim() == 2 && mask->size(0) == proj.size(0) && mask->size(1) == proj.size(1),
                "wfsa_cpu: mask must be [T, B]");
  }
}

// Gradients below this are flushed to zero: they arise as products of hundreds of
// self-loop weights f < 1, are far below the precision of any sum they enter, and their
// products with the inputs in the weight-gradient matmul would be denormal (~25x slower).
template <typename T>
constexpr T tiny_grad() {
  return std::numeric_limits<T>::min() * T(67108864.0) * T(67108864.0);  // 2^-74 / 2^-970
}

// One real time step t of the forward for one document: next[1+s] = c_s(t) from
// prev[1+s] = c_s(t-1), and the readout's accumulators: mean: acc += c(t); max: acc, arg =
// the running max and its step.
template <typename T, int R>
static inline void step_forward(const T* __restrict pw, const T* __restrict pv,
                                const T* __restrict bs, const T* __restrict first,
                                const T* __restrict prev, T* __restrict next,
                                T* __restrict acc, int32_t* __restrict arg, int32_t t, int64_t N) {
#pragma omp simd
  for (int64_t s = 0; s < N; ++s) {
    const T a = pv[s] + bs[s];
    SR_SIGMOID2(a, f, omf)
    const T u = pw[s] * omf;
    const T p = first[s] != T(0) ? T(1) : prev[s];
    const T c = f * prev[s + 1] + u * p;
    next[s + 1] = c;
    if constexpr (R == kMean) acc[s] += c;
    if constexpr (R == kMax) {
      const bool gt = c > acc[s];  // strict: a tie keeps the first step
      acc[s] = gt ? c : acc[s];
      arg[s] = gt ? t : arg[s];
    }
  }
}

// One real time step t of the backward: from g = dL/dc(t) carried from later steps, plus
// the readout's own gradient at t (mean: gin = G/L; max: gin = G where arg = t), and prev =
// c(t-1) (padded), write the gradients of proj[t] and accumulate the bias gradient; gf, gu
// are scratch for g(t-1).
template <typename T, int R>
static inline void step_backward(const T* __restrict pw, const T* __restrict pv,
                                 const T* __restrict bs, const T* __restrict first,
                                 const T* __restrict prev, const T* __restrict g,
                                 const T* __restrict gin, const int32_t* __restrict arg, int32_t t,
                                 T* __restrict dw, T* __restrict dv, T* __restrict db,
                                 T* __restrict gf, T* __restrict gu, int64_t N) {
  const T tiny = tiny_grad<T>();
#pragma omp simd
  for (int64_t s = 0; s < N; ++s) {
    const T a = pv[s] + bs[s];
    SR_SIGMOID2(a, f, omf)
    const T z = pw[s];
    const T u = z * omf;
    const T p = first[s] != T(0) ? T(1) : prev[s];
    T gs = g[s];
    if constexpr (R == kMean || R == kSteps) gs += gin[s];
    if constexpr (R == kMax) gs += arg[s] == t ? gin[s] : T(0);
    const T du = gs * p;
    const T df = gs * prev[s + 1];
    T da = (df - du * z) * f * omf;
    T dz = du * omf;
    da = std::abs(da) < tiny ? T(0) : da;
    dz = std::abs(dz) < tiny ? T(0) : dz;
    dw[s] = dz;
    dv[s] = da;
    db[s] += da;
    gf[s] = gs * f;
    gu[s] = gs * u;
  }
}

template <typename T>
static inline void step_adjoint(const T* __restrict gf, const T* __restrict gu,
                                const T* __restrict cont, T* __restrict g, int64_t N) {
#pragma omp simd
  for (int64_t s = 0; s < N; ++s) g[s] = gf[s] + cont[s] * gu[s + 1];
}

// Element strides of a [T, B, ...] tensor over its first two dims.
struct TB {
  int64_t t, b;
  int64_t at(int64_t ti, int64_t bi) const { return ti * t + bi * b; }
};

// The number of real steps of document b.
static int64_t real_steps(const bool* mask, TB ms, int64_t Tn, int64_t b) {
  if (!mask) return Tn;
  int64_t n = 0;
  for (int64_t t = 0; t < Tn; ++t) n += mask[ms.at(t, b)] ? 1 : 0;
  return n;
}

template <typename T, int R>
void forward_kernel(const T* proj, TB ps, const T* bias, const T* first, const bool* mask, TB ms,
                    int64_t Tn, int64_t B, int64_t N, T* out, T* hist, int32_t* argmax) {
  at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    FlushDenormals ftz;
    std::vector<T> buf_a(N + 1), buf_b(N + 1), acc_v(R == kFinal || R == kSteps ? 0 : N);
    T* acc = acc_v.data();
    for (int64_t b = b0; b < b1; ++b) {
      T* prev = buf_a.data();  // prev[0] = pad, prev[1 + s] = c_s
      T* next = buf_b.data();
      std::fill(buf_a.begin(), buf_a.end(), T(0));
      std::fill(buf_b.begin(), buf_b.end(), T(0));
      int32_t* arg = R == kMax ? argmax + b * N : nullptr;
      if constexpr (R == kMean) std::fill(acc_v.begin(), acc_v.end(), T(0));
      if constexpr (R == kMax) {
        std::fill(acc_v.begin(), acc_v.end(), -std::numeric_limits<T>::infinity());
        std::fill(arg, arg + N, int32_t(-1));
      }
      int64_t len = 0;
      for (int64_t t = 0; t < Tn; ++t) {
        if (hist) std::memcpy(hist + (b * Tn + t) * N, prev + 1, N * sizeof(T));
        if (mask && !mask[ms.at(t, b)]) continue;
        const T* pw = proj + ps.at(t, b);
        step_forward<T, R>(pw, pw + N, bias, first, prev, next, acc, arg, static_cast<int32_t>(t), N);
        std::swap(prev, next);
        ++len;
      }
      T* y = out + b * N;
      if constexpr (R == kFinal || R == kSteps) std::memcpy(y, prev + 1, N * sizeof(T));
      if constexpr (R == kMean) {
        const T n = static_cast<T>(std::max<int64_t>(len, 1));
        for (int64_t s = 0; s < N; ++s) y[s] = acc[s] / n;
      }
      if constexpr (R == kMax)
        for (int64_t s = 0; s < N; ++s) y[s] = len > 0 ? acc[s] : T(0);
    }
  });
}

template <typename T, int R>
void backward_kernel(const T* grad_y, const int32_t* argmax, const T* proj, TB ps, const T* bias,
                     const T* first, const T* cont, const bool* mask, TB ms, const T* hist,
                     int64_t Tn, int64_t B, int64_t N, T* dproj, TB ds, T* dbias_part) {
  at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    FlushDenormals ftz;
    std::vector<T> g_v(N), gf_v(N), gu_v(N + 1), prev_v(N + 1), gin_v(R == kMean ? N : 0);
    T* g = g_v.data();
    T* prev = prev_v.data();
    for (int64_t b = b0; b < b1; ++b) {
      T* db = dbias_part + b * N;
      const T* G = grad_y + (R == kSteps ? b * Tn * N : b * N);
      const T* gin = G;  // injected at the real steps that the readout reads
      const int32_t* arg = R == kMax ? argmax + b * N : nullptr;
      if constexpr (R == kFinal) std::memcpy(g, G, N * sizeof(T));
      if constexpr (R != kFinal) std::fill(g_v.begin(), g_v.end(), T(0));
      if constexpr (R == kMean) {
        const T n = static_cast<T>(std::max<int64_t>(real_steps(mask, ms, Tn, b), 1));
        for (int64_t s = 0; s < N; ++s) gin_v[s] = G[s] / n;
        gin = gin_v.data();
      }
      gu_v[N] = T(0);
      prev[0] = T(0);
      for (int64_t t = Tn - 1; t >= 0; --t) {
        T* dw = dproj + ds.at(t, b);
        if constexpr (R == kSteps) gin = G + t * N;  // dL/dc(t)
        if (mask && !mask[ms.at(t, b)]) {
          std::memset(dw, 0, 2 * N * sizeof(T));
          if constexpr (R == kSteps)  // c(t) = c(t-1): its gradient joins the carried one
            for (int64_t s = 0; s < N; ++s) g[s] += gin[s];
          continue;
        }
        std::memcpy(prev + 1, hist + (b * Tn + t) * N, N * sizeof(T));
        const T* pw = proj + ps.at(t, b);
        step_backward<T, R>(pw, pw + N, bias, first, prev, g, gin, arg, static_cast<int32_t>(t),
                            dw, dw + N, db, gf_v.data(), gu_v.data(), N);
        step_adjoint<T>(gf_v.data(), gu_v.data(), cont, g, N);
      }
    }
  });
}

at::Tensor rows_dense(const at::Tensor& proj) {
  return proj.stride(2) == 1 ? proj : proj.contiguous();
}

at::Tensor mask_of(const std::optional<at::Tensor>& mask_in) {
  if (!mask_in.has_value() || !mask_in->defined()) return at::Tensor();
  return mask_in->scalar_type() == at::kBool ? *mask_in : mask_in->to(at::kBool);
}

TB tb(const at::Tensor& t) { return TB{t.stride(0), t.stride(1)}; }

// (y [B, N], states c(0..T-1) [B, T, N] if save_hist else [0], argmax int32 [B, N] if the
// readout is max else [0]).
std::tuple<at::Tensor, at::Tensor, at::Tensor> wfsa_forward(
    const at::Tensor& proj_in, const at::Tensor& bias_in, const at::Tensor& is_first,
    const std::optional<at::Tensor>& mask_in, bool save_hist, int64_t readout) {
  check_inputs(proj_in, bias_in, is_first, mask_in);
  const auto proj = rows_dense(proj_in);
  const auto bias = bias_in.contiguous();
  const auto mask = mask_of(mask_in);
  const int64_t Tn = proj.size(0), B = proj.size(1), N = proj.size(2) / 2;
  TORCH_CHECK(Tn < std::numeric_limits<int32_t>::max(), "wfsa_cpu: T must be below 2^31");
  auto out = at::empty({B, N}, proj.options());
  auto hist = save_hist ? at::empty({B, Tn, N}, proj.options()) : at::empty({0}, proj.options());
  auto argmax = at::empty({readout == kMax ? B : 0, readout == kMax ? N : 0},
                          proj.options().dtype(at::kInt));
  if (B == 0 || N == 0) return {out.zero_(), hist.zero_(), argmax.fill_(-1)};
  AT_DISPATCH_FLOATING_TYPES(proj.scalar_type(), "wfsa_forward", [&] {
    std::vector<scalar_t> first, cont;
    Structure::build<scalar_t>(is_first, N, first, cont);
    with_readout(readout, [&](auto r) {
      forward_kernel<scalar_t, decltype(r)::value>(
          proj.data_ptr<scalar_t>(), tb(proj), bias.data_ptr<scalar_t>(), first.data(),
          mask.defined() ? mask.data_ptr<bool>() : nullptr, mask.defined() ? tb(mask) : TB{0, 0},
          Tn, B, N, out.data_ptr<scalar_t>(), save_hist ? hist.data_ptr<scalar_t>() : nullptr,
          readout == kMax ? argmax.data_ptr<int32_t>() : nullptr);
    });
  });
  return {out, hist, argmax};
}

std::tuple<at::Tensor, at::Tensor> wfsa_backward(const at::Tensor& grad_in, const at::Tensor& proj_in,
                                                 const at::Tensor& bias_in,
                                                 const at::Tensor& is_first,
                                                 const std::optional<at::Tensor>& mask_in,
                                                 const at::Tensor& hist_in,
                                                 const at::Tensor& argmax_in, int64_t readout) {
  check_inputs(proj_in, bias_in, is_first, mask_in);
  const auto proj = rows_dense(proj_in);
  const auto bias = bias_in.contiguous();
  const auto mask = mask_of(mask_in);
  const auto grad = grad_in.to(proj.scalar_type()).contiguous();
  const auto hist = hist_in.contiguous();
  const int64_t Tn = proj.size(0), B = proj.size(1), N = proj.size(2) / 2;
  TORCH_CHECK(hist.dim() == 3 && hist.size(0) == B && hist.size(1) == Tn && hist.size(2) == N,
              "wfsa_cpu backward: saved states must be [B, T, N] (forward run with save_hist)");
  if (readout == kSteps) {
    TORCH_CHECK(grad.dim() == 3 && grad.size(0) == B && grad.size(1) == Tn && grad.size(2) == N,
                "wfsa_cpu backward: grad of every step must be [B, T, N]");
  } else {
    TORCH_CHECK(grad.dim() == 2 && grad.size(0) == B && grad.size(1) == N,
                "wfsa_cpu backward: grad must be [B, N]");
  }
  const auto argmax = argmax_in.contiguous();
  TORCH_CHECK(readout != kMax || (argmax.scalar_type() == at::kInt && argmax.dim() == 2 &&
                                  argmax.size(0) == B && argmax.size(1) == N),
              "wfsa_cpu backward: the max readout needs its argmax steps, int32 [B, N]");
  auto dproj = at::empty_like(proj_in);  // the layout of proj (what the fake impl promises)
  auto work = dproj.stride(2) == 1 ? dproj : at::empty_like(proj);
  auto dpart = at::zeros({B, N}, proj.options());
  auto dbias = at::zeros({N}, proj.options());
  if (B == 0 || N == 0) return {dproj.zero_(), dbias};
  AT_DISPATCH_FLOATING_TYPES(proj.scalar_type(), "wfsa_backward", [&] {
    std::vector<scalar_t> first, cont;
    Structure::build<scalar_t>(is_first, N, first, cont);
    with_readout(readout, [&](auto r) {
      backward_kernel<scalar_t, decltype(r)::value>(
          grad.data_ptr<scalar_t>(), readout == kMax ? argmax.data_ptr<int32_t>() : nullptr,
          proj.data_ptr<scalar_t>(), tb(proj), bias.data_ptr<scalar_t>(), first.data(),
          cont.data(), mask.defined() ? mask.data_ptr<bool>() : nullptr,
          mask.defined() ? tb(mask) : TB{0, 0}, hist.data_ptr<scalar_t>(), Tn, B, N,
          work.data_ptr<scalar_t>(), tb(work), dpart.data_ptr<scalar_t>());
    });
    // Deterministic reduction over the batch (fixed order, independent of the thread count).
    const scalar_t* dp = dpart.data_ptr<scalar_t>();
    scalar_t* dbp = dbias.data_ptr<scalar_t>();
    for (int64_t b = 0; b < B; ++b)
      for (int64_t s = 0; s < N; ++s) dbp[s] += dp[b * N + s];
  });
  if (!work.is_same(dproj)) dproj.copy_(work);
  return {dproj, dbias};
}

}  // namespace

TORCH_LIBRARY(sparse_rational_cpp, m) {
  m.def("forward(Tensor proj, Tensor bias, Tensor is_first, Tensor? mask, bool save_hist, int readout) -> (Tensor, Tensor, Tensor)");
  m.def("backward(Tensor grad, Tensor proj, Tensor bias, Tensor is_first, Tensor? mask, Tensor hist, Tensor argmax, int readout) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(sparse_rational_cpp, CPU, m) {
  m.impl("forward", &wfsa_forward);
  m.impl("backward", &wfsa_backward);
}
