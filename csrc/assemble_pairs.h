// Shared between the portable, AVX2 and AVX-512 row kernels of syncssl::assemble_pairs (see assemble_pairs.cpp).
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cstdint>
#include <type_traits>

// For a row kernel's per-pixel and per-step helpers: with one kernel instantiation per combination of options, GCC's
// inlining budget otherwise leaves some of them as calls that pass their vectors through memory (measured ~20%
// slower).
#if defined(__GNUC__) || defined(__clang__)
#define SYNCSSL_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define SYNCSSL_ALWAYS_INLINE inline
#endif

namespace syncssl {

// Column taps are stored per view as arrays padded to a multiple of this (the AVX-512 kernel's vector width);
// padding columns have weight zero and repeat the last column's address (so columns stay monotonic).
constexpr int64_t kColumnPad = 16;

// Everything one output row needs. Taps outside the frame's valid region have weight zero and a clamped,
// readable address; their weight goes to the fill value instead. The two column taps of an output pixel are always
// the adjacent source pixels at byte offsets col[j] and col[j] + 3, so one 8-byte load fetches both (the portable
// kernel reads col[j] + col_step instead, never past a 1-pixel-wide frame).
struct RowJob {
  const uint8_t* frame;       // the view's source frame
  const uint8_t* background;  // its camera's background (bg modes 1, 2)
  const uint8_t* substitute;  // the substitute background (fill_index >= 0)
  int64_t row0, row1;         // byte offsets of the two source rows
  float wy0, wy1;             // their weights
  const int32_t* col;         // per output column (already mirrored when flipped): byte offset of the left tap
  const float* wx0;           // ... weight of the left tap
  const float* wx1;           // ... weight of the right tap (at col + col_step)
  int64_t col_step;           // 3, or 0 for a frame 1 pixel wide (its right tap has weight zero: read nothing new)
  float fill[3];              // constant fill, 0..255
  float scale[3];             // 1 / (255 std)
  float shift[3];             // -mean / std
  float threshold;            // bg_threshold of the view's background (Euclidean RGB distance)
  float inv_softness;         // 1 / bg_softness (mode 2)
  float shadow_min;           // shadow test: least brightness ratio
  float shadow_limit;         // shadow test: 1 + shadow_chroma^2
  uint8_t* classes;           // clean-up: where the row's per-pixel classes go (kBackground...), S bytes
  int64_t size;               // S
  bool wide_loads_safe;       // an 8-byte load at any column tap of this row stays inside the images' tensors
  int window_chunks;          // AVX-512 kernel: 64-byte chunks holding any 16 consecutive columns' taps (1 or 2;
                              // 0: wider, or a frame 1 pixel wide: that kernel does not apply)
};

// Per-pixel classes of step 3, written for the clean-up (step 3b). Bit 0 is "foreground", so the foreground
// neighbours of a pixel are counted with & 1.
constexpr uint8_t kBackground = 0;  // not a candidate: d <= threshold
constexpr uint8_t kForeground = 1;  // a candidate that is not a shadow
constexpr uint8_t kShadow = 2;      // a candidate that passes the shadow test
// Clean-up: a foreground pixel with fewer than kSpeckBelow foreground neighbours (of 8) is a speck (alpha 0); a
// shadow pixel with at least kShadowFillFrom, and a background pixel with at least kHoleFillFrom, are body (1).
constexpr int kSpeckBelow = 1;
constexpr int kShadowFillFrom = 3;
constexpr int kHoleFillFrom = 5;

// What one row kernel call does, fixed per op call: background mode, substitution, shadow test, class output.
struct RowOptions {
  int64_t mode;     // 0, 1, 2
  bool substitute;  // fill_index >= 0
  bool shadow;      // shadow test (modes 1, 2)
  bool classes;     // write RowJob::classes (modes 1, 2 with the clean-up)
};

// Calls kernel(std::integral_constant<int, MODE>, std::bool_constant<SUBSTITUTE>, std::bool_constant<SHADOW>,
// std::bool_constant<CLASSES>) for the run-time options: every row kernel is instantiated per combination, so its
// inner loop has no branches on them. Mode 0 has no shadow test and no classes.
template <typename Kernel>
inline void dispatch_row(const RowOptions& o, Kernel&& kernel) {
  auto with_classes = [&](auto m, auto s, auto sh) {
    o.classes ? kernel(m, s, sh, std::true_type{}) : kernel(m, s, sh, std::false_type{});
  };
  auto with_shadow = [&](auto m, auto s) {
    o.shadow ? with_classes(m, s, std::true_type{}) : with_classes(m, s, std::false_type{});
  };
  auto with_mode = [&](auto m) {
    if constexpr (decltype(m)::value == 0) {
      o.substitute ? kernel(m, std::true_type{}, std::false_type{}, std::false_type{})
                   : kernel(m, std::false_type{}, std::false_type{}, std::false_type{});
    } else {
      o.substitute ? with_shadow(m, std::true_type{}) : with_shadow(m, std::false_type{});
    }
  };
  switch (o.mode) {
    case 0: return with_mode(std::integral_constant<int, 0>{});
    case 1: return with_mode(std::integral_constant<int, 1>{});
    default: return with_mode(std::integral_constant<int, 2>{});
  }
}

// Whether this CPU runs the AVX2 kernel (AVX2 + FMA + F16C), and that kernel, when compiled in.
bool avx2_available();
template <typename out_t>
void assemble_row_avx2(const RowJob& job, const RowOptions& options, out_t* out);

// Whether this CPU runs the AVX-512 kernel (AVX512 F/BW/VL/DQ/VBMI/BF16), and that kernel (rows with
// window_chunks > 0), when compiled in.
bool avx512_available();
template <typename out_t>
void assemble_row_avx512(const RowJob& job, const RowOptions& options, out_t* out);

}  // namespace syncssl
