// Shared between the portable, AVX2 and AVX-512 row kernels of syncssl::assemble_pairs (see assemble_pairs.cpp).
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cstdint>
#include <type_traits>

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
  float threshold;            // bg_threshold
  float inv_softness;         // 1 / bg_softness (mode 2)
  int64_t size;               // S
  bool wide_loads_safe;       // an 8-byte load at any column tap of this row stays inside the images' tensors
  int window_chunks;          // AVX-512 kernel: 64-byte chunks holding any 16 consecutive columns' taps (1 or 2;
                              // 0: wider, or a frame 1 pixel wide: that kernel does not apply)
};

// Calls kernel(std::integral_constant<int, MODE>, std::bool_constant<SUBSTITUTE>) for the run-time background
// mode and substitution flag: every row kernel is instantiated per combination, so its inner loop has no branches
// on them.
template <typename Kernel>
inline void dispatch_row(int64_t mode, bool substitute, Kernel&& kernel) {
  auto with_mode = [&](auto m) { substitute ? kernel(m, std::true_type{}) : kernel(m, std::false_type{}); };
  switch (mode) {
    case 0: return with_mode(std::integral_constant<int, 0>{});
    case 1: return with_mode(std::integral_constant<int, 1>{});
    default: return with_mode(std::integral_constant<int, 2>{});
  }
}

// Whether this CPU runs the AVX2 kernel (AVX2 + FMA + F16C), and that kernel, when compiled in.
bool avx2_available();
template <typename out_t>
void assemble_row_avx2(const RowJob& job, int64_t mode, bool substitute, out_t* out);

// Whether this CPU runs the AVX-512 kernel (AVX512 F/BW/VL/DQ/VBMI/BF16), and that kernel (rows with
// window_chunks > 0), when compiled in.
bool avx512_available();
template <typename out_t>
void assemble_row_avx512(const RowJob& job, int64_t mode, bool substitute, out_t* out);

}  // namespace syncssl
