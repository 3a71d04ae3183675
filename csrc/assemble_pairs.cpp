// CPU kernel of syncssl::assemble_pairs: crop + bilinear resize + background removal/substitution + flip +
// normalisation + cast + channels_last, in one pass. The semantics are written out in syncssl/ops/assemble.py;
// syncssl/ops/reference.py is their executable form, which this kernel is tested against.
//
// Work is split over (view, output row). Everything that depends only on the output column (source column taps,
// their weights, the flip) is computed once per view; everything that depends only on the row once per row, so
// the inner loop over a row's pixels is straight-line arithmetic on three channels with no per-pixel branches.
// Taps outside a frame's valid region are given weight zero and a clamped (safe) address; their weight goes to
// the fill value instead, which is exactly "outside taps contribute the fill".
//
// The clean-up (step 3b) needs the classes of the neighbouring rows: with it, the row kernels also write each
// pixel's class, and right after row i, row i - 1 is cleaned: only the few pixels whose alpha changes are sampled
// again (from source rows still in cache) and overwritten.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <torch/library.h>

#include "assemble_pairs.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

namespace syncssl {
namespace {

// The two bilinear taps along one axis for one output column (or row).
struct Taps {
  int64_t off0, off1;  // byte offsets of the taps, clamped into the valid region so every read is safe
  float w0, w1;        // their weights; zero for a tap outside the valid region
};

// Taps of source coordinate `coord` on an axis with `valid` pixels, `stride` bytes apart. With `adjacent`, the
// taps are moved onto the pixel pair (b, b + 1), b = clamp(floor(coord), 0, valid - 2), carrying the weights of
// whichever original taps they coincide with (b + 1 may lie outside when valid == 1: it then has weight zero).
inline Taps axis_taps(float coord, int64_t valid, int64_t stride, bool adjacent) {
  // Clamping changes nothing that matters (beyond it both taps are outside) and keeps huge or NaN boxes safe.
  coord = std::fmin(std::fmax(coord, -2.0f), static_cast<float>(valid) + 1.0f);
  const float lower = std::floor(coord);
  const float frac = coord - lower;
  const int64_t i0 = static_cast<int64_t>(lower), i1 = i0 + 1;
  const float w0 = i0 >= 0 && i0 < valid ? 1.0f - frac : 0.0f;  // zero for a tap outside
  const float w1 = i1 >= 0 && i1 < valid ? frac : 0.0f;
  Taps t;
  if (!adjacent) {
    t.off0 = std::clamp<int64_t>(i0, 0, valid - 1) * stride;
    t.off1 = std::clamp<int64_t>(i1, 0, valid - 1) * stride;
    t.w0 = w0;
    t.w1 = w1;
    return t;
  }
  const int64_t b = std::clamp<int64_t>(i0, 0, std::max<int64_t>(valid - 2, 0));
  t.off0 = b * stride;
  t.off1 = (b + 1) * stride;
  t.w0 = (i0 == b ? w0 : 0.0f) + (i1 == b ? w1 : 0.0f);
  t.w1 = (i0 == b + 1 ? w0 : 0.0f) + (i1 == b + 1 ? w1 : 0.0f);
  return t;
}

// The weighted sum of the four taps of channel c of `image` (taps outside the frame have weight zero).
SYNCSSL_ALWAYS_INLINE float tap_sum(const uint8_t* image, const RowJob& job, int64_t x0, int64_t x1, int c,
                                    const float w[4]) {
  const uint8_t* r0 = image + job.row0;
  const uint8_t* r1 = image + job.row1;
  return w[0] * r0[x0 + c] + w[1] * r0[x1 + c] + w[2] * r1[x0 + c] + w[3] * r1[x1 + c];
}

// The bilinear samples of output pixel j of a row (step 2): the fill value F, the frame's sample and (modes 1, 2)
// the background's.
template <int MODE, bool SUBSTITUTE>
SYNCSSL_ALWAYS_INLINE void sample_pixel(const RowJob& job, int64_t j, float fillv[3], float pix[3], float bgv[3]) {
  const float wy = job.wy0 + job.wy1;
  const float wx0 = job.wx0[j], wx1 = job.wx1[j];
  const float w[4] = {job.wy0 * wx0, job.wy0 * wx1, job.wy1 * wx0, job.wy1 * wx1};
  const float outside = 1.0f - wy * (wx0 + wx1);  // total weight of the taps outside the frame
  const int64_t x0 = job.col[j], x1 = x0 + job.col_step;
  for (int c = 0; c < 3; ++c) {
    fillv[c] = SUBSTITUTE ? tap_sum(job.substitute, job, x0, x1, c, w) + outside * job.fill[c] : job.fill[c];
    pix[c] = tap_sum(job.frame, job, x0, x1, c, w) + outside * fillv[c];
    if constexpr (MODE != 0) bgv[c] = tap_sum(job.background, job, x0, x1, c, w) + outside * fillv[c];
  }
}

SYNCSSL_ALWAYS_INLINE float dot3(const float a[3], const float b[3]) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }

// The portable kernel: one output row, S pixels x 3 channels, written sequentially to `out`.
template <typename out_t, int MODE, bool SUBSTITUTE, bool SHADOW, bool CLASSES>
void assemble_row(const RowJob& job, out_t* out) {
  for (int64_t j = 0; j < job.size; ++j) {
    float fillv[3], pix[3], bgv[3];
    sample_pixel<MODE, SUBSTITUTE>(job, j, fillv, pix, bgv);
    float alpha = 1.0f;
    if constexpr (MODE != 0) {
      const float diff[3] = {pix[0] - bgv[0], pix[1] - bgv[1], pix[2] - bgv[2]};
      const float d = std::sqrt(dot3(diff, diff));
      const bool candidate = d > job.threshold;
      bool shadow = false;
      if constexpr (SHADOW) {
        const float pb = dot3(pix, bgv), bb = std::fmax(dot3(bgv, bgv), 1.0f), pp = dot3(pix, pix);
        shadow = candidate && pb >= job.shadow_min * bb && pb < bb && pp * bb < job.shadow_limit * (pb * pb);
      }
      if constexpr (CLASSES) job.classes[j] = shadow ? kShadow : candidate ? kForeground : kBackground;
      if constexpr (MODE == 1) {
        alpha = candidate && !shadow ? 1.0f : 0.0f;
      } else {
        alpha = shadow ? 0.0f : std::fmin(std::fmax((d - job.threshold) * job.inv_softness + 0.5f, 0.0f), 1.0f);
      }
    }
    for (int c = 0; c < 3; ++c) {
      const float value = MODE == 0 ? pix[c] : fillv[c] + alpha * (pix[c] - fillv[c]);
      out[j * 3 + c] = static_cast<out_t>(value * job.scale[c] + job.shift[c]);
    }
  }
}

template <typename out_t>
void assemble_row_portable(const RowJob& job, const RowOptions& options, out_t* out) {
  dispatch_row(options, [&](auto m, auto s, auto sh, auto cl) {
    assemble_row<out_t, decltype(m)::value, decltype(s)::value, decltype(sh)::value, decltype(cl)::value>(job, out);
  });
}

// What the clean-up does to a pixel.
constexpr uint8_t kKeep = 0;     // alpha of step 3
constexpr uint8_t kToFill = 1;   // alpha 0: a speck
constexpr uint8_t kToFrame = 2;  // alpha 1: a shadow or a hole inside the body

// Step 3b, part 1, for output row i: what the clean-up does to each pixel, into `action` (S bytes rounded up to a
// multiple of 8, the padding kKeep). `above`, `row`, `below`: the classes of rows i - 1, i, i + 1 from column -1
// to S (a border of kBackground: neighbours outside the grid are not foreground). Returns whether any pixel
// changes.
bool clean_actions(const uint8_t* above, const uint8_t* row, const uint8_t* below, int64_t S, uint8_t* action) {
  uint8_t any = kKeep;
  for (int64_t j = 0; j < S; ++j) {  // branch-free and in bytes, so the compiler vectorises it 16 pixels at a time
    const uint8_t n = static_cast<uint8_t>((above[j] & 1) + (above[j + 1] & 1) + (above[j + 2] & 1) + (row[j] & 1) +
                                           (row[j + 2] & 1) + (below[j] & 1) + (below[j + 1] & 1) + (below[j + 2] & 1));
    const uint8_t c = row[j + 1];
    const bool speck = c == kForeground && n < kSpeckBelow;
    const bool body = (c == kShadow && n >= kShadowFillFrom) || (c == kBackground && n >= kHoleFillFrom);
    action[j] = speck ? kToFill : body ? kToFrame : kKeep;
    any |= action[j];
  }
  return any != kKeep;
}

// Step 3b, part 2: the row kernel has already written the row with the alpha of step 3; only the pixels whose
// alpha the clean-up changes (few) are sampled again and overwritten, with alpha 0 (the fill) or 1 (the frame).
template <typename out_t, bool SUBSTITUTE>
void clean_row(const RowJob& job, const uint8_t* action, out_t* out) {
  for (int64_t j0 = 0; j0 < job.size; j0 += 8) {
    uint64_t word;  // 8 pixels' actions at once: most are kKeep
    std::memcpy(&word, action + j0, 8);
    if (word == 0) continue;
    for (int64_t j = j0; j < std::min(j0 + 8, job.size); ++j) {
      if (action[j] == kKeep) continue;
      float fillv[3], pix[3];
      sample_pixel<0, SUBSTITUTE>(job, j, fillv, pix, nullptr);
      const float* value = action[j] == kToFrame ? pix : fillv;
      for (int c = 0; c < 3; ++c) out[j * 3 + c] = static_cast<out_t>(value[c] * job.scale[c] + job.shift[c]);
    }
  }
}

inline void prefetch(const void* address) {
#if defined(__GNUC__) || defined(__clang__)
  __builtin_prefetch(address);
#endif
}

bool env_flag(const char* name) {
  const char* flag = std::getenv(name);
  return flag != nullptr && flag[0] == '1';
}

// SYNCSSL_PORTABLE_KERNEL=1 forces the portable kernel, SYNCSSL_NO_AVX512=1 the AVX2 one where it applies (the
// tests compare the kernels against the reference).
bool use_avx2() { return !env_flag("SYNCSSL_PORTABLE_KERNEL") && avx2_available(); }
bool use_avx512() { return use_avx2() && !env_flag("SYNCSSL_NO_AVX512") && avx512_available(); }

bool poison_requested() {
  // Debug aid for the tests: pre-fill the output with NaN so an element the kernel forgets to write shows.
  const char* flag = std::getenv("SYNCSSL_DEBUG_POISON");
  return flag != nullptr && flag[0] == '1';
}

void check_index_range(const at::Tensor& index, int64_t low, int64_t high, const char* name, const char* what) {
  if (index.numel() == 0) return;
  const int64_t lo = index.min().item<int64_t>(), hi = index.max().item<int64_t>();
  TORCH_CHECK(lo >= low && hi < high, "assemble_pairs: ", name, " must lie in [", low, ", ", high, ") (", what,
              "); found values in [", lo, ", ", hi, "]");
}

at::Tensor assemble_pairs_cpu(const at::Tensor& frames_in, const at::Tensor& frame_hw_in, const at::Tensor& src_in,
                              const at::Tensor& boxes_in, const at::Tensor& flip_in, const at::Tensor& backgrounds_in,
                              const at::Tensor& bg_index_in, const at::Tensor& fill_index_in,
                              const at::Tensor& fill_in, const at::Tensor& mean_in, const at::Tensor& std_in,
                              const at::Tensor& bg_threshold_in, int64_t size, int64_t bg_mode, double bg_softness,
                              double shadow_min, double shadow_chroma, bool clean, at::ScalarType out_dtype) {
  // Shapes and dtypes (the Python API checks these too, with friendlier messages; the op must be safe alone).
  TORCH_CHECK(frames_in.dim() == 4 && frames_in.size(3) == 3 && frames_in.scalar_type() == at::kByte,
              "assemble_pairs: frames must be uint8 (M, H, W, 3), got ", frames_in.scalar_type(), " ",
              frames_in.sizes());
  const int64_t M = frames_in.size(0), H = frames_in.size(1), W = frames_in.size(2);
  const int64_t V = src_in.numel();
  TORCH_CHECK(size >= 1, "assemble_pairs: size must be >= 1, got ", size);
  TORCH_CHECK(bg_mode >= 0 && bg_mode <= 2, "assemble_pairs: bg_mode must be 0, 1 or 2, got ", bg_mode);
  TORCH_CHECK(bg_mode != 2 || bg_softness > 0, "assemble_pairs: bg_softness must be > 0 in mode 2");
  TORCH_CHECK(shadow_min >= 0 && shadow_min <= 1, "assemble_pairs: shadow_min must lie in [0, 1], got ", shadow_min);
  TORCH_CHECK(shadow_chroma >= 0, "assemble_pairs: shadow_chroma must be >= 0, got ", shadow_chroma);
  TORCH_CHECK(out_dtype == at::kFloat || out_dtype == at::kHalf || out_dtype == at::kBFloat16,
              "assemble_pairs: out_dtype must be float32, float16 or bfloat16, got ", out_dtype);
  TORCH_CHECK(frame_hw_in.dim() == 2 && frame_hw_in.size(0) == M && frame_hw_in.size(1) == 2,
              "assemble_pairs: frame_hw must be (M, 2) = (", M, ", 2), got ", frame_hw_in.sizes());
  TORCH_CHECK(src_in.dim() == 1, "assemble_pairs: src must be 1-D (V,)");
  TORCH_CHECK(boxes_in.dim() == 2 && boxes_in.size(0) == V && boxes_in.size(1) == 4,
              "assemble_pairs: boxes must be (V, 4) = (", V, ", 4), got ", boxes_in.sizes());
  TORCH_CHECK(flip_in.numel() == V && bg_index_in.numel() == V && fill_index_in.numel() == V,
              "assemble_pairs: flip, bg_index and fill_index must have V = ", V, " elements");
  TORCH_CHECK(backgrounds_in.dim() == 4 && backgrounds_in.size(1) == H && backgrounds_in.size(2) == W &&
                  backgrounds_in.size(3) == 3 && backgrounds_in.scalar_type() == at::kByte,
              "assemble_pairs: backgrounds must be uint8 (B, ", H, ", ", W, ", 3), got ",
              backgrounds_in.scalar_type(), " ", backgrounds_in.sizes());
  TORCH_CHECK(fill_in.numel() == 3 && mean_in.numel() == 3 && std_in.numel() == 3,
              "assemble_pairs: fill, mean and std must have 3 elements");
  for (const at::Tensor* t : {&frames_in, &frame_hw_in, &src_in, &boxes_in, &flip_in, &backgrounds_in, &bg_index_in,
                              &fill_index_in, &fill_in, &mean_in, &std_in, &bg_threshold_in}) {
    TORCH_CHECK(t->device().is_cpu(), "assemble_pairs (CPU kernel): every tensor must be on the CPU");
  }
  const int64_t B = backgrounds_in.size(0);
  TORCH_CHECK(bg_threshold_in.dim() == 1 && bg_threshold_in.size(0) == B,
              "assemble_pairs: bg_threshold must be (B,) = (", B, ",), one per background, got ",
              bg_threshold_in.sizes());
  TORCH_CHECK(W * 3 + 8 < std::numeric_limits<int32_t>::max(), "assemble_pairs: frames are too wide (W = ", W, ")");

  const at::Tensor frames = frames_in.contiguous();
  const at::Tensor backgrounds = backgrounds_in.contiguous();
  const at::Tensor frame_hw = frame_hw_in.to(at::kLong).contiguous();
  const at::Tensor src = src_in.to(at::kLong).contiguous();
  const at::Tensor boxes = boxes_in.to(at::kFloat).contiguous();
  const at::Tensor flip = flip_in.to(at::kByte).contiguous();
  const at::Tensor bg_index = bg_index_in.to(at::kLong).contiguous();
  const at::Tensor fill_index = fill_index_in.to(at::kLong).contiguous();
  const at::Tensor fill = fill_in.to(at::kFloat).contiguous();
  const at::Tensor mean = mean_in.to(at::kFloat).contiguous();
  const at::Tensor stdv = std_in.to(at::kFloat).contiguous();
  const at::Tensor bg_threshold = bg_threshold_in.to(at::kFloat).contiguous();

  check_index_range(src, 0, M, "src", "an index into frames");
  if (bg_mode != 0) {
    check_index_range(bg_index, 0, B, "bg_index", "an index into backgrounds");
    TORCH_CHECK(at::isfinite(bg_threshold).all().item<bool>() && bg_threshold.ge(0).all().item<bool>(),
                "assemble_pairs: bg_threshold must be finite and >= 0");
  }
  check_index_range(fill_index, -1, B, "fill_index", "-1 or an index into backgrounds");
  if (M > 0) {
    const at::Tensor h = frame_hw.select(1, 0), w = frame_hw.select(1, 1);
    TORCH_CHECK(h.min().item<int64_t>() >= 1 && h.max().item<int64_t>() <= H && w.min().item<int64_t>() >= 1 &&
                    w.max().item<int64_t>() <= W,
                "assemble_pairs: frame_hw must hold 1 <= h <= H = ", H, " and 1 <= w <= W = ", W);
  }

  at::Tensor out = at::empty({V, 3, size, size}, frames.options().dtype(out_dtype), at::MemoryFormat::ChannelsLast);
  if (poison_requested()) out.fill_(std::numeric_limits<float>::quiet_NaN());
  if (V == 0) return out;

  const int64_t S = size;
  const int64_t row_bytes = W * 3, image_bytes = H * W * 3;
  const int64_t frames_bytes = M * image_bytes, backgrounds_bytes = B * image_bytes;
  const uint8_t* frames_p = frames.data_ptr<uint8_t>();
  const uint8_t* backgrounds_p = backgrounds.data_ptr<uint8_t>();
  const int64_t* hw_p = frame_hw.data_ptr<int64_t>();
  const int64_t* src_p = src.data_ptr<int64_t>();
  const float* boxes_p = boxes.data_ptr<float>();
  const uint8_t* flip_p = flip.data_ptr<uint8_t>();
  const int64_t* bg_p = bg_index.data_ptr<int64_t>();
  const int64_t* fi_p = fill_index.data_ptr<int64_t>();
  float scale[3], shift[3];  // (value / 255 - mean) / std as one multiply-add
  for (int c = 0; c < 3; ++c) {
    scale[c] = 1.0f / (255.0f * stdv.data_ptr<float>()[c]);
    shift[c] = -mean.data_ptr<float>()[c] / stdv.data_ptr<float>()[c];
  }
  const float* fill_p = fill.data_ptr<float>();
  const float* threshold_p = bg_threshold.data_ptr<float>();
  const float inv_softness = bg_mode == 2 ? static_cast<float>(1.0 / bg_softness) : 0.0f;
  const bool cleaning = clean && bg_mode != 0;
  RowOptions options;
  options.mode = bg_mode;
  options.shadow = bg_mode != 0 && shadow_chroma > 0;
  options.classes = cleaning;

  // Column taps depend only on the view: compute them once, already mirrored for flipped views, as arrays
  // padded to a multiple of kColumnPad (padding: weight zero, address of the last column).
  const int64_t padded = (S + kColumnPad - 1) / kColumnPad * kColumnPad;
  std::vector<int32_t> col(V * padded, 0);
  std::vector<float> wx0(V * padded, 0.0f), wx1(V * padded, 0.0f);
  std::vector<int64_t> span_lo(V), span_hi(V);  // byte range of each view's column taps within a row
  std::vector<int> window_chunks(V);  // see RowJob::window_chunks
  at::parallel_for(0, V, 1, [&](int64_t begin, int64_t end) {
    for (int64_t v = begin; v < end; ++v) {
      const float* box = boxes_p + v * 4;
      const float step = (box[2] - box[0]) / static_cast<float>(S);
      const int64_t w = hw_p[src_p[v] * 2 + 1];
      for (int64_t j = 0; j < S; ++j) {
        const int64_t jj = flip_p[v] ? S - 1 - j : j;
        const float x = box[0] + (static_cast<float>(jj) + 0.5f) * step - 0.5f;
        const Taps t = axis_taps(x, w, 3, /*adjacent=*/true);
        col[v * padded + j] = static_cast<int32_t>(t.off0);
        wx0[v * padded + j] = t.w0;
        wx1[v * padded + j] = t.w1;
      }
      const int32_t* cols = col.data() + v * padded;
      std::fill(col.begin() + v * padded + S, col.begin() + (v + 1) * padded, cols[S - 1]);
      const auto [lo, hi] = std::minmax_element(cols, cols + S);
      span_lo[v] = *lo;
      span_hi[v] = *hi + 6;
      // The widest window of one AVX-512 step's (monotonic) columns' taps decides that kernel's chunks. Wider
      // windows (downscaling by more than ~2.5) go to the AVX2 kernel: 4-chunk permutes measured slower than it.
      int64_t widest = 0;
      for (int64_t j = 0; j < padded; j += kColumnPad) {
        widest = std::max<int64_t>(widest, std::abs(cols[j + kColumnPad - 1] - cols[j]) + 6);
      }
      window_chunks[v] = w < 2 ? 0 : widest <= 64 ? 1 : widest <= 128 ? 2 : 0;
    }
  });
  auto row_taps = [&](int64_t v, int64_t i) {
    const float* box = boxes_p + v * 4;
    const float step = (box[3] - box[1]) / static_cast<float>(S);
    const float y = box[1] + (static_cast<float>(i) + 0.5f) * step - 0.5f;
    return axis_taps(y, hw_p[src_p[v] * 2], row_bytes, /*adjacent=*/false);
  };
  // Source rows of output row i + 1 are requested while row i is computed: rows of a downscaled crop are too far
  // apart for the hardware prefetcher to guess them.
  auto prefetch_row = [&](int64_t v, int64_t i) {
    const Taps ty = row_taps(v, i);
    for (const uint8_t* image : {frames_p + src_p[v] * image_bytes,
                                 bg_mode != 0 ? backgrounds_p + bg_p[v] * image_bytes : nullptr,
                                 fi_p[v] >= 0 ? backgrounds_p + fi_p[v] * image_bytes : nullptr}) {
      if (image == nullptr) continue;
      for (int64_t row : {ty.off0, ty.off1}) {
        for (int64_t b = span_lo[v]; b < span_hi[v]; b += 64) prefetch(image + row + b);
        prefetch(image + row + span_hi[v] - 1);  // the last cache line of the span
      }
    }
  };
  const bool avx2 = use_avx2(), avx512 = use_avx512();
  auto make_job = [&](int64_t v, int64_t i) {
    const int64_t s = src_p[v], w = hw_p[s * 2 + 1];
    const bool substitute = fi_p[v] >= 0;
    RowJob job;
    job.frame = frames_p + s * image_bytes;
    job.background = bg_mode != 0 ? backgrounds_p + bg_p[v] * image_bytes : nullptr;
    job.substitute = substitute ? backgrounds_p + fi_p[v] * image_bytes : nullptr;
    const Taps ty = row_taps(v, i);
    job.row0 = ty.off0;
    job.row1 = ty.off1;
    job.wy0 = ty.w0;
    job.wy1 = ty.w1;
    job.col = col.data() + v * padded;
    job.col_step = w >= 2 ? 3 : 0;
    job.wx0 = wx0.data() + v * padded;
    job.wx1 = wx1.data() + v * padded;
    for (int c = 0; c < 3; ++c) {
      job.fill[c] = fill_p[c];
      job.scale[c] = scale[c];
      job.shift[c] = shift[c];
    }
    job.threshold = bg_mode != 0 ? threshold_p[bg_p[v]] : 0.0f;
    job.inv_softness = inv_softness;
    job.shadow_min = static_cast<float>(shadow_min);
    job.shadow_limit = static_cast<float>(1.0 + shadow_chroma * shadow_chroma);
    job.classes = nullptr;
    job.size = S;
    // The AVX2 kernel loads 8 bytes per column tap pair (6 used): past the end of a tensor only at its very end.
    const int64_t read_end = ty.off1 + std::max<int64_t>(w - 2, 0) * 3 + 8;  // within an image, at most
    job.wide_loads_safe = s * image_bytes + read_end <= frames_bytes &&
                          (bg_mode == 0 || bg_p[v] * image_bytes + read_end <= backgrounds_bytes) &&
                          (!substitute || fi_p[v] * image_bytes + read_end <= backgrounds_bytes);
    job.window_chunks = window_chunks[v];
    return job;
  };
  auto run = [&](auto type_tag) {
    using scalar_t = decltype(type_tag);
    scalar_t* out_p = out.data_ptr<scalar_t>();  // channels_last: physically (V, S, S, 3)
    // One row: the row kernel for the view's options, on the fastest path that applies to the row.
    auto assemble_row = [&](int64_t v, int64_t i, const RowJob& job) {
      RowOptions o = options;
      o.substitute = fi_p[v] >= 0;
      scalar_t* row_out = out_p + (v * S + i) * S * 3;
      if (avx512 && job.window_chunks > 0) {
        assemble_row_avx512<scalar_t>(job, o, row_out);
      } else if (avx2 && job.wide_loads_safe) {
        assemble_row_avx2<scalar_t>(job, o, row_out);
      } else {
        assemble_row_portable<scalar_t>(job, o, row_out);
      }
    };
    if (!cleaning) {
      // A few rows per task: enough work to amortise scheduling, small enough to balance odd view sizes.
      const int64_t grain = std::max<int64_t>(1, 2048 / S);
      at::parallel_for(0, V * S, grain, [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) {
          const int64_t v = r / S, i = r % S;
          if (i + 1 < S) prefetch_row(v, i + 1);
          assemble_row(v, i, make_job(v, i));
        }
      });
      return;
    }
    // With the clean-up, step 3b of row i - 1 needs the classes of rows i - 2 .. i: a task takes whole views and
    // cleans each row right after the row kernel has done the next one, while the source rows that the few
    // changed pixels sample again are still in cache. Classes live in a ring of 3 rows of S + 2 bytes (a border
    // of kBackground: neighbours outside the grid are not foreground), rows -1 and S in a row of kBackground.
    const int64_t P = S + 2;
    at::parallel_for(0, V, 1, [&](int64_t begin, int64_t end) {
      std::vector<uint8_t> ring(3 * P, kBackground), outside(P, kBackground);
      std::vector<uint8_t> action((S + 7) / 8 * 8, kKeep);
      auto classes = [&](int64_t i) { return i < 0 || i >= S ? outside.data() : ring.data() + i % 3 * P; };
      auto clean = [&](int64_t v, int64_t i, const RowJob& job) {
        if (!clean_actions(classes(i - 1), classes(i), classes(i + 1), S, action.data())) return;
        scalar_t* row_out = out_p + (v * S + i) * S * 3;
        if (fi_p[v] >= 0) {
          clean_row<scalar_t, true>(job, action.data(), row_out);
        } else {
          clean_row<scalar_t, false>(job, action.data(), row_out);
        }
      };
      for (int64_t v = begin; v < end; ++v) {
        RowJob previous;
        for (int64_t i = 0; i < S; ++i) {
          if (i + 1 < S) prefetch_row(v, i + 1);
          RowJob job = make_job(v, i);
          job.classes = classes(i) + 1;
          assemble_row(v, i, job);
          if (i > 0) clean(v, i - 1, previous);
          previous = job;
        }
        clean(v, S - 1, previous);
      }
    });
  };
  switch (out_dtype) {
    case at::kHalf: run(c10::Half()); break;
    case at::kBFloat16: run(c10::BFloat16()); break;
    default: run(float()); break;
  }
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(syncssl, m) {
  // The one schema of the op. A fragment, so other csrc files may add ops to the namespace. The CUDA kernel
  // (Triton) and the fake kernel are registered from Python, in the module named here.
  m.set_python_module("syncssl.ops.assemble");
  m.def(
      "assemble_pairs(Tensor frames, Tensor frame_hw, Tensor src, Tensor boxes, Tensor flip, Tensor backgrounds, "
      "Tensor bg_index, Tensor fill_index, Tensor fill, Tensor mean, Tensor std, Tensor bg_threshold, int size, "
      "int bg_mode, float bg_softness, float shadow_min, float shadow_chroma, bool clean, ScalarType out_dtype) "
      "-> Tensor");
}

TORCH_LIBRARY_IMPL(syncssl, CPU, m) { m.impl("assemble_pairs", &assemble_pairs_cpu); }

}  // namespace syncssl
