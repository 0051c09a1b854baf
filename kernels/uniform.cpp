// The noise draw of the CPU trainer: t.uniform_(from, to, generator=gen) for a contiguous float32
// CPU tensor, the same numbers and the same generator state after it as torch's, about 5x faster
// (kernels.native.uniform_; part of the C++ twins' build, bound in kernels/twins.cpp).
//
// torch draws each float on its own (ATen's cpu_serial_kernel over at::mt19937, one 32-bit output
// at a time, behind the generator's lock): 2.9 ns a number, 73 µs of a 2.2 ms iteration at batch
// 128 (its 2 x 128 x 100 noise numbers). Here the same Mersenne Twister runs a block of 624 words
// at a time, with the tempering and the conversion in one loop over the block that the compiler
// vectorizes (an AVX2 clone where the CPU has it): 0.5 ns a number (benchmarks/NOTES.md, v4.15).
//
// What torch computes, and so this file (ATen/core/MT19937RNGEngine.h, TransformationHelper.h):
// each output y of the engine (tempered state word) gives x = (y & (2^24 - 1)) / 2^24 in double
// and the number float(x * double(float(to) - float(from)) + double(float(from))).

#include <torch/extension.h>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/MT19937RNGEngine.h>

#include <algorithm>
#include <mutex>

#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__)
#define CLONES __attribute__((target_clones("avx2", "default")))
#else
#define CLONES
#endif

namespace {

constexpr int N = 624, M = 397;  // at::mt19937's state words and shift
constexpr uint32_t MATRIX_A = 0x9908b0df, UMASK = 0x80000000, LMASK = 0x7fffffff;

inline uint32_t twist(uint32_t u, uint32_t v) { return (((u & UMASK) | (v & LMASK)) >> 1) ^ ((v & 1) ? MATRIX_A : 0); }

// at::mt19937's next_state: the next 624 state words, in place.
CLONES void regenerate(uint32_t* s) {
  int i = 0;
  for (; i < N - M; ++i) s[i] = s[i + M] ^ twist(s[i], s[i + 1]);
  for (; i < N - 1; ++i) s[i] = s[i + M - N] ^ twist(s[i], s[i + 1]);
  s[N - 1] = s[M - 1] ^ twist(s[N - 1], s[0]);
}

// n numbers from n state words: the engine's tempering, then torch's uniform_real.
CLONES void numbers(const uint32_t* s, int64_t n, float* out, double span, double from) {
  for (int64_t j = 0; j < n; ++j) {
    uint32_t y = s[j];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >> 18;
    double x = static_cast<double>(y & 0xffffff) * (1.0 / 16777216.0);
    out[j] = static_cast<float>(x * span + from);
  }
}

}  // namespace

void uniform_(at::Tensor out, double from, double to, const at::Generator& gen) {
  TORCH_CHECK(out.is_cpu() && out.scalar_type() == at::kFloat && out.is_contiguous(),
              "uniform_ (C++): out must be a contiguous float32 CPU tensor; use torch's uniform_ for others");
  TORCH_CHECK(from <= to, "uniform_ (C++): needs from <= to, got ", from, " and ", to);
  auto* g = at::check_generator<at::CPUGeneratorImpl>(gen);
  std::lock_guard<std::mutex> lock(g->mutex_);
  at::mt19937 engine = g->engine();
  at::mt19937_data_pod d = engine.data();
  float f_from = static_cast<float>(from), f_to = static_cast<float>(to);
  double span = static_cast<double>(f_to - f_from);  // torch's uniform_real_distribution<float>: in float
  float* o = out.data_ptr<float>();
  for (int64_t i = 0, n = out.numel(); i < n;) {
    // The engine's call with left_ 1 regenerates and returns word 0, leaving left_ 624 and next_ 1:
    // as if left_ were 625 and next_ 0 before it. With left_ > 1 it returns word next_, unchanged.
    if (d.left_ == 1) {
      regenerate(d.state_.data());
      d.left_ = N + 1;
      d.next_ = 0;
    }
    int64_t take = std::min<int64_t>(n - i, d.left_ - 1);
    numbers(d.state_.data() + d.next_, take, o + i, span, f_from);
    d.next_ += take;
    d.left_ -= take;
    i += take;
  }
  engine.set_data(d);
  g->set_engine(engine);
}
