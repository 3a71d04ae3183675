// AVX2 row kernel of syncssl::assemble_pairs: 8 output pixels per step, channels in separate registers.
//
// Per step, image and source row, one 8-byte load per pixel fetches its two adjacent column taps (6 bytes; the
// caller routes rows where the 2 extra bytes could lie past the end of a tensor to the portable kernel); shifts
// and masks turn them into float planes (AVX2 gathers are slower than these plain loads on current CPUs). The taps
// are blended per channel, and the three channel vectors are interleaved to RGB order before one contiguous store
// per 8 values. Compiled with a target attribute and chosen at run time, so the extension still builds and runs on
// CPUs (and compilers) without AVX2.
#include "assemble_pairs.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define SYNCSSL_HAVE_AVX2 1
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#endif

namespace syncssl {

#if SYNCSSL_HAVE_AVX2

#define SYNCSSL_AVX2 __attribute__((target("avx2,fma,f16c")))

bool avx2_available() {
  static const bool available =
      __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  return available;
}

namespace {

struct Lanes {  // per-step constants shared by every image
  const int32_t* col;  // byte offsets of the 8 pixels' left taps
  __m256 w00, w01, w10, w11;
};

SYNCSSL_AVX2 SYNCSSL_ALWAYS_INLINE long long load8(const uint8_t* p) {
  long long v;
  std::memcpy(&v, p, 8);
  return v;
}

// The taps of 8 pixels in one source row as 6 float planes: R, G, B of the left tap, then of the right tap.
struct RowTaps {
  __m256 plane[6];
};

SYNCSSL_AVX2 SYNCSSL_ALWAYS_INLINE RowTaps load_row(const uint8_t* row, const int32_t* col) {
  // One 8-byte load per pixel (R G B R' G' B' + 2 unused bytes), pixels 0, 1, 4, 5 in `a` and 2, 3, 6, 7 in `b`
  // so that one in-lane shuffle puts the first (second) 32-bit halves of all 8 loads in pixel order.
  const __m256 a = _mm256_castsi256_ps(
      _mm256_setr_epi64x(load8(row + col[0]), load8(row + col[1]), load8(row + col[4]), load8(row + col[5])));
  const __m256 b = _mm256_castsi256_ps(
      _mm256_setr_epi64x(load8(row + col[2]), load8(row + col[3]), load8(row + col[6]), load8(row + col[7])));
  const __m256i lo = _mm256_castps_si256(_mm256_shuffle_ps(a, b, 0x88));  // bytes R G B R' of pixels 0..7
  const __m256i hi = _mm256_castps_si256(_mm256_shuffle_ps(a, b, 0xDD));  // bytes G' B' - - of pixels 0..7
  const __m256i byte = _mm256_set1_epi32(0xFF);
  RowTaps t;
  t.plane[0] = _mm256_cvtepi32_ps(_mm256_and_si256(lo, byte));
  t.plane[1] = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(lo, 8), byte));
  t.plane[2] = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(lo, 16), byte));
  t.plane[3] = _mm256_cvtepi32_ps(_mm256_srli_epi32(lo, 24));
  t.plane[4] = _mm256_cvtepi32_ps(_mm256_and_si256(hi, byte));
  t.plane[5] = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(hi, 8), byte));
  return t;
}

// sum of the four weighted valid taps of one image, per channel (invalid taps have weight zero).
SYNCSSL_AVX2 SYNCSSL_ALWAYS_INLINE void sample(const uint8_t* image, int64_t row0, int64_t row1, const Lanes& l,
                                                __m256 out[3]) {
  const RowTaps r0 = load_row(image + row0, l.col), r1 = load_row(image + row1, l.col);
  for (int c = 0; c < 3; ++c) {
    __m256 acc = _mm256_mul_ps(l.w00, r0.plane[c]);
    acc = _mm256_fmadd_ps(l.w01, r0.plane[3 + c], acc);
    acc = _mm256_fmadd_ps(l.w10, r1.plane[c], acc);
    out[c] = _mm256_fmadd_ps(l.w11, r1.plane[3 + c], acc);
  }
}

// Stores 8 floats as out_t.
template <typename out_t>
SYNCSSL_AVX2 SYNCSSL_ALWAYS_INLINE void store8(out_t* dst, __m256 v);

template <>
SYNCSSL_AVX2 SYNCSSL_ALWAYS_INLINE void store8<float>(float* dst, __m256 v) {
  _mm256_storeu_ps(dst, v);
}

template <>
SYNCSSL_AVX2 SYNCSSL_ALWAYS_INLINE void store8<c10::Half>(c10::Half* dst, __m256 v) {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
}

template <>
SYNCSSL_AVX2 SYNCSSL_ALWAYS_INLINE void store8<c10::BFloat16>(c10::BFloat16* dst, __m256 v) {
  // Round to nearest even, as c10::BFloat16(float) does for finite values.
  const __m256i bits = _mm256_castps_si256(v);
  const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
  const __m256i bias = _mm256_add_epi32(odd, _mm256_set1_epi32(0x7FFF));
  const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(bits, bias), 16);
  const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(rounded, rounded), 0xD8);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), _mm256_castsi256_si128(packed));
}

// Planes R, G, B of 8 pixels -> 24 values in RGB order, as three vectors of 8. Output k, lane l holds element
// e = 8k + l = 3p + c (pixel p, channel c): every plane is permuted so that pixel p = e / 3 sits in lane l, then
// per lane the blend takes the plane of channel c.
struct Interleave {
  __m256i idx[3];  // the lane permutation of each output vector
};

SYNCSSL_AVX2 SYNCSSL_ALWAYS_INLINE Interleave make_interleave() {
  Interleave it;
  for (int k = 0; k < 3; ++k) {
    alignas(32) int idx[8];
    for (int l = 0; l < 8; ++l) idx[l] = (8 * k + l) / 3;
    it.idx[k] = _mm256_load_si256(reinterpret_cast<const __m256i*>(idx));
  }
  return it;
}

template <int K>
SYNCSSL_AVX2 SYNCSSL_ALWAYS_INLINE __m256 interleaved(const Interleave& it, __m256 r, __m256 g, __m256 b) {
  // Lane l of output K is channel (8K + l) % 3: blend masks per K (bit l set = take the second operand).
  constexpr int g_mask = K == 0 ? 0b10010010 : K == 1 ? 0b00100100 : 0b01001001;
  constexpr int b_mask = K == 0 ? 0b00100100 : K == 1 ? 0b01001001 : 0b10010010;
  const __m256 rr = _mm256_permutevar8x32_ps(r, it.idx[K]);
  const __m256 gg = _mm256_permutevar8x32_ps(g, it.idx[K]);
  const __m256 bb = _mm256_permutevar8x32_ps(b, it.idx[K]);
  return _mm256_blend_ps(_mm256_blend_ps(rr, gg, g_mask), bb, b_mask);
}

SYNCSSL_AVX2 SYNCSSL_ALWAYS_INLINE __m256 dot3(const __m256 a[3], const __m256 b[3]) {
  return _mm256_fmadd_ps(a[2], b[2], _mm256_fmadd_ps(a[1], b[1], _mm256_mul_ps(a[0], b[0])));
}

// Stores the classes of n <= 8 pixels (lane masks: all ones where true) as bytes.
SYNCSSL_AVX2 SYNCSSL_ALWAYS_INLINE void store_classes(uint8_t* dst, __m256 foreground, __m256 shadow, int64_t n) {
  const __m256i fg = _mm256_and_si256(_mm256_castps_si256(foreground), _mm256_set1_epi32(kForeground));
  const __m256i sh = _mm256_and_si256(_mm256_castps_si256(shadow), _mm256_set1_epi32(kShadow));
  const __m256i classes = _mm256_or_si256(fg, sh);
  const __m128i words = _mm_packus_epi32(_mm256_castsi256_si128(classes), _mm256_extracti128_si256(classes, 1));
  const long long bytes = _mm_cvtsi128_si64(_mm_packus_epi16(words, words));
  std::memcpy(dst, &bytes, n);
}

template <typename out_t, int MODE, bool SUBSTITUTE, bool SHADOW, bool CLASSES>
SYNCSSL_AVX2 void row_kernel(const RowJob& job, out_t* out) {
  Lanes l;
  const Interleave it = make_interleave();
  const __m256 wy0 = _mm256_set1_ps(job.wy0), wy1 = _mm256_set1_ps(job.wy1);
  const __m256 wy = _mm256_set1_ps(job.wy0 + job.wy1), one = _mm256_set1_ps(1.0f);
  const __m256 zero = _mm256_setzero_ps(), half = _mm256_set1_ps(0.5f);
  const __m256 threshold = _mm256_set1_ps(job.threshold), inv_softness = _mm256_set1_ps(job.inv_softness);
  const __m256 shadow_min = _mm256_set1_ps(job.shadow_min), shadow_limit = _mm256_set1_ps(job.shadow_limit);
  __m256 fill[3], scale[3], shift[3];
  for (int c = 0; c < 3; ++c) {
    fill[c] = _mm256_set1_ps(job.fill[c]);
    scale[c] = _mm256_set1_ps(job.scale[c]);
    shift[c] = _mm256_set1_ps(job.shift[c]);
  }
  for (int64_t j = 0; j < job.size; j += 8) {
    l.col = job.col + j;
    const __m256 wx0 = _mm256_loadu_ps(job.wx0 + j), wx1 = _mm256_loadu_ps(job.wx1 + j);
    l.w00 = _mm256_mul_ps(wy0, wx0);
    l.w01 = _mm256_mul_ps(wy0, wx1);
    l.w10 = _mm256_mul_ps(wy1, wx0);
    l.w11 = _mm256_mul_ps(wy1, wx1);
    const __m256 outside = _mm256_fnmadd_ps(wy, _mm256_add_ps(wx0, wx1), one);  // weight of the invalid taps

    __m256 fillv[3], pix[3], bgv[3];
    if constexpr (SUBSTITUTE) {
      sample(job.substitute, job.row0, job.row1, l, fillv);
      for (int c = 0; c < 3; ++c) fillv[c] = _mm256_fmadd_ps(outside, fill[c], fillv[c]);
    } else {
      for (int c = 0; c < 3; ++c) fillv[c] = fill[c];
    }
    sample(job.frame, job.row0, job.row1, l, pix);
    for (int c = 0; c < 3; ++c) pix[c] = _mm256_fmadd_ps(outside, fillv[c], pix[c]);
    __m256 value[3];
    if constexpr (MODE == 0) {
      for (int c = 0; c < 3; ++c) value[c] = pix[c];
    } else {
      sample(job.background, job.row0, job.row1, l, bgv);
      __m256 diff[3];
      for (int c = 0; c < 3; ++c) {
        bgv[c] = _mm256_fmadd_ps(outside, fillv[c], bgv[c]);
        diff[c] = _mm256_sub_ps(pix[c], bgv[c]);
      }
      const __m256 d = _mm256_sqrt_ps(dot3(diff, diff));
      const __m256 candidate = _mm256_cmp_ps(d, threshold, _CMP_GT_OQ);
      __m256 shadow = zero;
      if constexpr (SHADOW) {
        const __m256 pb = dot3(pix, bgv), bb = _mm256_max_ps(dot3(bgv, bgv), one), pp = dot3(pix, pix);
        shadow = _mm256_and_ps(candidate, _mm256_cmp_ps(pb, _mm256_mul_ps(shadow_min, bb), _CMP_GE_OQ));
        shadow = _mm256_and_ps(shadow, _mm256_cmp_ps(pb, bb, _CMP_LT_OQ));
        shadow = _mm256_and_ps(shadow, _mm256_cmp_ps(_mm256_mul_ps(pp, bb),
                                                     _mm256_mul_ps(shadow_limit, _mm256_mul_ps(pb, pb)), _CMP_LT_OQ));
      }
      const __m256 foreground = _mm256_andnot_ps(shadow, candidate);
      if constexpr (CLASSES) store_classes(job.classes + j, foreground, shadow, std::min<int64_t>(8, job.size - j));
      __m256 alpha;
      if constexpr (MODE == 1) {
        alpha = _mm256_and_ps(foreground, one);
      } else {
        const __m256 ramp = _mm256_fmadd_ps(_mm256_sub_ps(d, threshold), inv_softness, half);
        alpha = _mm256_andnot_ps(shadow, _mm256_min_ps(_mm256_max_ps(ramp, zero), one));
      }
      for (int c = 0; c < 3; ++c) value[c] = _mm256_fmadd_ps(alpha, _mm256_sub_ps(pix[c], fillv[c]), fillv[c]);
    }
    for (int c = 0; c < 3; ++c) value[c] = _mm256_fmadd_ps(value[c], scale[c], shift[c]);

    const __m256 o0 = interleaved<0>(it, value[0], value[1], value[2]);
    const __m256 o1 = interleaved<1>(it, value[0], value[1], value[2]);
    const __m256 o2 = interleaved<2>(it, value[0], value[1], value[2]);
    out_t* dst = out + j * 3;
    if (j + 8 <= job.size) {
      store8(dst, o0);
      store8(dst + 8, o1);
      store8(dst + 16, o2);
    } else {  // the row's last, partial step: write only its pixels
      out_t tail[24];
      store8(tail, o0);
      store8(tail + 8, o1);
      store8(tail + 16, o2);
      std::memcpy(dst, tail, sizeof(out_t) * 3 * (job.size - j));
    }
  }
}

}  // namespace

template <typename out_t>
void assemble_row_avx2(const RowJob& job, const RowOptions& options, out_t* out) {
  dispatch_row(options, [&](auto m, auto s, auto sh, auto cl) {
    row_kernel<out_t, decltype(m)::value, decltype(s)::value, decltype(sh)::value, decltype(cl)::value>(job, out);
  });
}

#else  // no AVX2 kernel on this platform / compiler

bool avx2_available() { return false; }

template <typename out_t>
void assemble_row_avx2(const RowJob&, const RowOptions&, out_t*) {}

#endif

template void assemble_row_avx2<float>(const RowJob&, const RowOptions&, float*);
template void assemble_row_avx2<c10::Half>(const RowJob&, const RowOptions&, c10::Half*);
template void assemble_row_avx2<c10::BFloat16>(const RowJob&, const RowOptions&, c10::BFloat16*);

}  // namespace syncssl
