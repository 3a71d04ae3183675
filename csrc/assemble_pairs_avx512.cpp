// AVX-512 row kernel of syncssl::assemble_pairs: 16 output pixels per step, channels in separate registers.
//
// The AVX2 kernel spends most of its instructions fetching taps: one scalar 8-byte load, insert and unpack per
// pixel, image and source row. Here the taps of 16 consecutive output pixels come from one window of consecutive
// source bytes (their columns are monotonic, and for scale factors up to ~2.5 a 16-pixel block spans at most 128
// bytes): per image and source row, 1 or 2 masked 64-byte loads fetch the window, and one byte permute per
// float plane (vpermb / vpermi2b, AVX512-VBMI) picks each pixel's tap byte straight into the low byte of its
// 32-bit lane. The permute indices depend only on the columns, so they are built once per step and shared by every
// image and row. Masked loads never fault on bytes they do not need, so this kernel needs no "wide loads safe"
// check. fp16 and bf16 are converted by vcvtps2ph / vcvtneps2bf16 (AVX512-BF16), which round to nearest even as
// c10::Half / c10::BFloat16 do for finite values.
//
// Compiled with a target attribute and chosen at run time (CPUs with AVX512 F, BW, VL, VBMI and BF16: AMD Zen 4+,
// Intel Sapphire Rapids+); elsewhere the AVX2 or portable kernel runs.
#include "assemble_pairs.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define SYNCSSL_HAVE_AVX512 1
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12's AVX-512 headers trip -W(maybe-)uninitialized on their _mm512_undefined_* placeholders.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#endif

namespace syncssl {

#if SYNCSSL_HAVE_AVX512

#define SYNCSSL_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vbmi,avx512bf16,fma,f16c")))

bool avx512_available() {
  static const bool available = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                                __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                                __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("avx512bf16");
  return available;
}

namespace {

static_assert(kColumnPad == 16, "the caller pads columns (and sizes windows) for steps of 16 pixels");

// Per step (16 output pixels): where their source bytes lie and the bilinear weights, shared by every image.
struct Step {
  int64_t base;           // byte offset (within a source row) of the window holding every tap of the 16 pixels
  __mmask64 chunk[2];     // bytes of each 64-byte chunk of the window that are needed (the rest are not read)
  __m512i index[6];       // for tap byte k (R G B of the left tap, then of the right): its position in the window,
                          // in the low byte of each pixel's 32-bit lane
  __m512 w00, w01, w10, w11;
};

// Keeps only the low byte of each 32-bit lane: a permuted tap byte becomes a zero-extended int32.
constexpr __mmask64 kLowBytes = 0x1111111111111111ULL;

// Tap byte plane (16 int32 -> float) of one window; CHUNKS = 64-byte registers in the window (1 or 2).
template <int CHUNKS>
SYNCSSL_AVX512 SYNCSSL_ALWAYS_INLINE __m512 tap_plane(const __m512i window[CHUNKS], __m512i index) {
  __m512i bytes;
  if constexpr (CHUNKS == 1) {
    bytes = _mm512_maskz_permutexvar_epi8(kLowBytes, index, window[0]);
  } else {
    bytes = _mm512_maskz_permutex2var_epi8(kLowBytes, window[0], index, window[1]);
  }
  return _mm512_cvtepi32_ps(bytes);
}

// The sum of the four weighted taps of one image, per channel (taps outside the frame have weight zero).
template <int CHUNKS>
SYNCSSL_AVX512 SYNCSSL_ALWAYS_INLINE void sample(const uint8_t* image, int64_t row0, int64_t row1, const Step& s,
                                                  __m512 out[3]) {
  __m512i w0[CHUNKS], w1[CHUNKS];
  for (int k = 0; k < CHUNKS; ++k) {
    w0[k] = _mm512_maskz_loadu_epi8(s.chunk[k], image + row0 + s.base + 64 * k);
    w1[k] = _mm512_maskz_loadu_epi8(s.chunk[k], image + row1 + s.base + 64 * k);
  }
  for (int c = 0; c < 3; ++c) {
    __m512 acc = _mm512_mul_ps(s.w00, tap_plane<CHUNKS>(w0, s.index[c]));
    acc = _mm512_fmadd_ps(s.w01, tap_plane<CHUNKS>(w0, s.index[3 + c]), acc);
    acc = _mm512_fmadd_ps(s.w10, tap_plane<CHUNKS>(w1, s.index[c]), acc);
    out[c] = _mm512_fmadd_ps(s.w11, tap_plane<CHUNKS>(w1, s.index[3 + c]), acc);
  }
}

// Stores 16 floats as out_t.
template <typename out_t>
SYNCSSL_AVX512 SYNCSSL_ALWAYS_INLINE void store16(out_t* dst, __m512 v);

template <>
SYNCSSL_AVX512 SYNCSSL_ALWAYS_INLINE void store16<float>(float* dst, __m512 v) {
  _mm512_storeu_ps(dst, v);
}

template <>
SYNCSSL_AVX512 SYNCSSL_ALWAYS_INLINE void store16<c10::Half>(c10::Half* dst, __m512 v) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
}

template <>
SYNCSSL_AVX512 SYNCSSL_ALWAYS_INLINE void store16<c10::BFloat16>(c10::BFloat16* dst, __m512 v) {
  const __m256bh packed = _mm512_cvtneps_pbh(v);
  std::memcpy(dst, &packed, sizeof(packed));
}

// Planes R, G, B of 16 pixels -> 48 values in RGB order, as three vectors of 16: lane l of output K holds element
// e = 16K + l = 3p + c (pixel p, channel c). One two-source permute takes R or G from lane p, then a masked
// permute puts B into the lanes of channel 2 (the same indices work: it reads only their low 4 bits).
struct Interleave {
  __m512i index[3];  // per output vector: p + 16 * (c == 1)
  __mmask16 blue[3];  // lanes with c == 2
};

SYNCSSL_AVX512 SYNCSSL_ALWAYS_INLINE Interleave make_interleave() {
  Interleave it;
  for (int k = 0; k < 3; ++k) {
    alignas(64) int32_t index[16];
    unsigned blue = 0;
    for (int l = 0; l < 16; ++l) {
      const int e = 16 * k + l;
      index[l] = e / 3 + (e % 3 == 1 ? 16 : 0);
      if (e % 3 == 2) blue |= 1u << l;
    }
    it.index[k] = _mm512_load_si512(index);
    it.blue[k] = static_cast<__mmask16>(blue);
  }
  return it;
}

SYNCSSL_AVX512 SYNCSSL_ALWAYS_INLINE __m512 interleaved(const Interleave& it, int k, __m512 r, __m512 g, __m512 b) {
  return _mm512_mask_permutexvar_ps(_mm512_permutex2var_ps(r, it.index[k], g), it.blue[k], it.index[k], b);
}

SYNCSSL_AVX512 SYNCSSL_ALWAYS_INLINE __m512 dot3(const __m512 a[3], const __m512 b[3]) {
  return _mm512_fmadd_ps(a[2], b[2], _mm512_fmadd_ps(a[1], b[1], _mm512_mul_ps(a[0], b[0])));
}

template <typename out_t, int MODE, bool SUBSTITUTE, bool SHADOW, bool CLASSES, int CHUNKS>
SYNCSSL_AVX512 void row_kernel(const RowJob& job, out_t* out) {
  const Interleave it = make_interleave();
  const __m512 wy0 = _mm512_set1_ps(job.wy0), wy1 = _mm512_set1_ps(job.wy1);
  const __m512 wy = _mm512_set1_ps(job.wy0 + job.wy1), one = _mm512_set1_ps(1.0f);
  const __m512 zero = _mm512_setzero_ps(), half = _mm512_set1_ps(0.5f);
  const __m512 threshold = _mm512_set1_ps(job.threshold), inv_softness = _mm512_set1_ps(job.inv_softness);
  const __m512 shadow_min = _mm512_set1_ps(job.shadow_min), shadow_limit = _mm512_set1_ps(job.shadow_limit);
  __m512 fill[3], scale[3], shift[3];
  for (int c = 0; c < 3; ++c) {
    fill[c] = _mm512_set1_ps(job.fill[c]);
    scale[c] = _mm512_set1_ps(job.scale[c]);
    shift[c] = _mm512_set1_ps(job.shift[c]);
  }
  Step s;
  for (int64_t j = 0; j < job.size; j += 16) {
    // Columns are monotonic (decreasing when flipped; padding repeats the last one), so the block's first and
    // last columns bound its window: [base, base + span), the right tap of the last pixel ending 6 bytes past it.
    const int32_t first = job.col[j], last = job.col[j + 15];
    s.base = std::min(first, last);
    const int64_t span = std::max(first, last) - s.base + 6;
    for (int k = 0; k < CHUNKS; ++k) {
      const int64_t bytes = span - 64 * k;
      s.chunk[k] = bytes >= 64 ? ~__mmask64{0} : bytes <= 0 ? __mmask64{0} : (__mmask64{1} << bytes) - 1;
    }
    const __m512i relative = _mm512_sub_epi32(_mm512_loadu_si512(job.col + j), _mm512_set1_epi32(s.base));
    for (int k = 0; k < 6; ++k) s.index[k] = _mm512_add_epi32(relative, _mm512_set1_epi32(k));
    const __m512 wx0 = _mm512_loadu_ps(job.wx0 + j), wx1 = _mm512_loadu_ps(job.wx1 + j);
    s.w00 = _mm512_mul_ps(wy0, wx0);
    s.w01 = _mm512_mul_ps(wy0, wx1);
    s.w10 = _mm512_mul_ps(wy1, wx0);
    s.w11 = _mm512_mul_ps(wy1, wx1);
    const __m512 outside = _mm512_fnmadd_ps(wy, _mm512_add_ps(wx0, wx1), one);  // weight of the invalid taps

    __m512 fillv[3], pix[3], bgv[3], value[3];
    if constexpr (SUBSTITUTE) {
      sample<CHUNKS>(job.substitute, job.row0, job.row1, s, fillv);
      for (int c = 0; c < 3; ++c) fillv[c] = _mm512_fmadd_ps(outside, fill[c], fillv[c]);
    } else {
      for (int c = 0; c < 3; ++c) fillv[c] = fill[c];
    }
    sample<CHUNKS>(job.frame, job.row0, job.row1, s, pix);
    for (int c = 0; c < 3; ++c) pix[c] = _mm512_fmadd_ps(outside, fillv[c], pix[c]);
    if constexpr (MODE == 0) {
      for (int c = 0; c < 3; ++c) value[c] = pix[c];
    } else {
      sample<CHUNKS>(job.background, job.row0, job.row1, s, bgv);
      __m512 diff[3];
      for (int c = 0; c < 3; ++c) {
        bgv[c] = _mm512_fmadd_ps(outside, fillv[c], bgv[c]);
        diff[c] = _mm512_sub_ps(pix[c], bgv[c]);
      }
      const __m512 d = _mm512_sqrt_ps(dot3(diff, diff));
      const __mmask16 candidate = _mm512_cmp_ps_mask(d, threshold, _CMP_GT_OQ);
      __mmask16 shadow = 0;
      if constexpr (SHADOW) {
        const __m512 pb = dot3(pix, bgv), bb = _mm512_max_ps(dot3(bgv, bgv), one), pp = dot3(pix, pix);
        shadow = _mm512_mask_cmp_ps_mask(candidate, pb, _mm512_mul_ps(shadow_min, bb), _CMP_GE_OQ);
        shadow = _mm512_mask_cmp_ps_mask(shadow, pb, bb, _CMP_LT_OQ);
        shadow = _mm512_mask_cmp_ps_mask(shadow, _mm512_mul_ps(pp, bb),
                                         _mm512_mul_ps(shadow_limit, _mm512_mul_ps(pb, pb)), _CMP_LT_OQ);
      }
      const __mmask16 foreground = _kandn_mask16(shadow, candidate);
      if constexpr (CLASSES) {
        const __m128i classes = _mm_or_si128(_mm_maskz_mov_epi8(foreground, _mm_set1_epi8(kForeground)),
                                             _mm_maskz_mov_epi8(shadow, _mm_set1_epi8(kShadow)));
        const int64_t n = std::min<int64_t>(16, job.size - j);
        _mm_mask_storeu_epi8(job.classes + j, static_cast<__mmask16>((1u << n) - 1), classes);
      }
      __m512 alpha;
      if constexpr (MODE == 1) {
        alpha = _mm512_maskz_mov_ps(foreground, one);
      } else {
        const __m512 ramp = _mm512_fmadd_ps(_mm512_sub_ps(d, threshold), inv_softness, half);
        alpha = _mm512_maskz_mov_ps(static_cast<__mmask16>(~shadow), _mm512_min_ps(_mm512_max_ps(ramp, zero), one));
      }
      for (int c = 0; c < 3; ++c) value[c] = _mm512_fmadd_ps(alpha, _mm512_sub_ps(pix[c], fillv[c]), fillv[c]);
    }
    for (int c = 0; c < 3; ++c) value[c] = _mm512_fmadd_ps(value[c], scale[c], shift[c]);

    const __m512 o0 = interleaved(it, 0, value[0], value[1], value[2]);
    const __m512 o1 = interleaved(it, 1, value[0], value[1], value[2]);
    const __m512 o2 = interleaved(it, 2, value[0], value[1], value[2]);
    out_t* dst = out + j * 3;
    if (j + 16 <= job.size) {
      store16(dst, o0);
      store16(dst + 16, o1);
      store16(dst + 32, o2);
    } else {  // the row's last, partial step: write only its pixels
      out_t tail[48];
      store16(tail, o0);
      store16(tail + 16, o1);
      store16(tail + 32, o2);
      std::memcpy(dst, tail, sizeof(out_t) * 3 * (job.size - j));
    }
  }
}

template <typename out_t, int MODE, bool SUBSTITUTE, bool SHADOW, bool CLASSES>
SYNCSSL_AVX512 void row_kernel(const RowJob& job, out_t* out) {
  switch (job.window_chunks) {
    case 1: return row_kernel<out_t, MODE, SUBSTITUTE, SHADOW, CLASSES, 1>(job, out);
    default: return row_kernel<out_t, MODE, SUBSTITUTE, SHADOW, CLASSES, 2>(job, out);
  }
}

}  // namespace

template <typename out_t>
void assemble_row_avx512(const RowJob& job, const RowOptions& options, out_t* out) {
  dispatch_row(options, [&](auto m, auto s, auto sh, auto cl) {
    row_kernel<out_t, decltype(m)::value, decltype(s)::value, decltype(sh)::value, decltype(cl)::value>(job, out);
  });
}

#else  // no AVX-512 kernel on this platform / compiler

bool avx512_available() { return false; }

template <typename out_t>
void assemble_row_avx512(const RowJob&, const RowOptions&, out_t*) {}

#endif

template void assemble_row_avx512<float>(const RowJob&, const RowOptions&, float*);
template void assemble_row_avx512<c10::Half>(const RowJob&, const RowOptions&, c10::Half*);
template void assemble_row_avx512<c10::BFloat16>(const RowJob&, const RowOptions&, c10::BFloat16*);

}  // namespace syncssl
