// ResNeXt's grouped 3x3 convolution on the CPU, for XLA through its FFI (hrjax/ops/grouped_conv.py builds and
// registers this file). Why it exists: XLA:CPU's own grouped convolution runs at 13-106 GFLOP/s on a 2-core
// AVX-512 machine, 2-4x under torch's oneDNN kernel (docs/benchmarks.md, "A grouped convolution of our own").
//
// float32 NHWC input, HWIO kernel (in-channels per group), NHWC output; groups of 8, 16, 32 or 64 channels in
// and out. Every output value is one sum over (ky, kx, input channel) in that order, with fused multiply-adds,
// like XLA's kernel: the results match it to float32 rounding (mostly bit for bit).
//
// Vector code uses the GCC/Clang vector extension, which the compiler lowers to AVX-512, AVX2, SSE or NEON.

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

// Shapes of one call. The input is h x w with `pad` zero pixels around it implied: hp = h + 2 pad, wp likewise.
struct Geometry {
  int64_t n, h, w, c, pad, hp, wp, kh, kw, cg, cout, cog, ho, wo, stride, groups;
};

// The target's vector registers: how many floats one holds and how many there are. Blocks are sized from these so
// that their sums stay in registers (an AVX2 build with AVX-512's blocking would spill most of them).
#if defined(__AVX512F__)
constexpr int kLanes = 16, kRegisters = 32;
#elif defined(__AVX__)
constexpr int kLanes = 8, kRegisters = 16;
#elif defined(__aarch64__)
constexpr int kLanes = 4, kRegisters = 32;
#else
constexpr int kLanes = 4, kRegisters = 16;
#endif

// (aligned(4): loads and stores of these types may be unaligned; GCC and Clang let a vector of floats alias floats)
template <int L> struct VecOf { typedef float T __attribute__((vector_size(4 * L), aligned(4))); };

// A block's output channels: COB of a group's COG (at most 4 vectors), in vectors of at most kLanes floats; and its
// pixels: as many sums as leave a quarter of the registers for the kernel row and the broadcast input (for groups
// of 32 channels: 12 pixels x 2 vectors on AVX-512, 3 pixels x 4 vectors on AVX2).
template <int COG> struct Vec {
  static constexpr int kLanes = COG < ::kLanes ? COG : ::kLanes;
  static constexpr int kChannels = COG < 4 * kLanes ? COG : 4 * kLanes;
  typedef typename VecOf<kLanes>::T T;
  static constexpr int kPixels = std::clamp((kRegisters - kRegisters / 4) / (kChannels / kLanes), 1, 24);
};

// PB neighbouring output pixels of one row, COB of the COG output channels of one group: PB x COB sums in
// registers, acc[p] += x[p, ci] (broadcast) * w[ky, kx, ci, :]. `x` is the row's first input row at its first
// pixel's column, `ps` floats from one input pixel to the next, `w` the group's kernel [ky][kx][ci][o] at the
// block's first channel, `y` the block's first output.
template <int CG, int COG, int COB, int PB>
inline void Block(const Geometry& g, const float* __restrict x, int64_t ps, const float* __restrict w,
                  float* __restrict y) {
  typedef typename Vec<COG>::T VT;
  constexpr int L = Vec<COG>::kLanes, NV = COB / L;
  VT acc[PB][NV];
  for (int p = 0; p < PB; ++p)
    for (int v = 0; v < NV; ++v) acc[p][v] = VT{};
  const int64_t xs = g.stride * ps;
  for (int64_t ky = 0; ky < g.kh; ++ky) {
    for (int64_t kx = 0; kx < g.kw; ++kx) {
      const float* xr = x + (ky * g.wp + kx) * ps;
      const float* wt = w + (ky * g.kw + kx) * CG * COG;
      for (int ci = 0; ci < CG; ++ci) {
        VT wr[NV];
        for (int v = 0; v < NV; ++v) wr[v] = *reinterpret_cast<const VT*>(wt + ci * COG + v * L);
#pragma GCC unroll 32
        for (int p = 0; p < PB; ++p) {
          const float xv = xr[p * xs + ci];
#pragma GCC unroll 8
          for (int v = 0; v < NV; ++v) acc[p][v] += xv * wr[v];
        }
      }
    }
  }
  for (int p = 0; p < PB; ++p)
    for (int v = 0; v < NV; ++v) *reinterpret_cast<VT*>(y + p * g.cout + v * L) = acc[p][v];
}

// Output rows oy0..oy1-1 of one group of one image, in blocks of Vec<COG> pixels and channels. The group's kernel
// is first copied to a contiguous buffer, and so are the (zero-padded) input rows it reads when groups are 32
// channels or wider: in NHWC a group's channels are a short run every C floats, and with C a multiple of 1024
// every pixel falls on the same L1 cache sets. Narrower groups read the input in place (a copy costs about what
// their arithmetic does), so their input comes padded already (pad == 0).
template <int CG, int COG>
void Rows(const Geometry& g, const float* x, const float* w, float* y, int64_t n, int64_t grp, int64_t oy0,
          int64_t oy1) {
  constexpr bool kCopyInput = CG >= 32;
  thread_local std::vector<float> xg, wg;
  wg.resize(g.kh * g.kw * CG * COG);
  for (int64_t k = 0; k < g.kh * g.kw * CG; ++k)
    std::memcpy(wg.data() + k * COG, w + k * g.cout + grp * COG, COG * sizeof(float));
  const int64_t iy0 = oy0 * g.stride, iy1 = (oy1 - 1) * g.stride + g.kh;  // padded input rows read
  const float* src;
  int64_t ps;
  if (kCopyInput) {
    xg.assign((iy1 - iy0) * g.wp * CG, 0.f);
    for (int64_t iy = std::max(iy0, g.pad); iy < std::min(iy1, g.h + g.pad); ++iy) {
      const float* from = x + ((n * g.h + iy - g.pad) * g.w) * g.c + grp * CG;
      float* to = xg.data() + ((iy - iy0) * g.wp + g.pad) * CG;
      for (int64_t px = 0; px < g.w; ++px) std::memcpy(to + px * CG, from + px * g.c, CG * sizeof(float));
    }
    src = xg.data();
    ps = CG;
  } else {
    src = x + ((n * g.hp + iy0) * g.wp) * g.c + grp * CG;
    ps = g.c;
  }
  constexpr int PB = Vec<COG>::kPixels, COB = Vec<COG>::kChannels;
  for (int64_t oy = oy0; oy < oy1; ++oy) {
    const float* xrow = src + (oy - oy0) * g.stride * g.wp * ps;
    float* yrow = y + ((n * g.ho + oy) * g.wo) * g.cout + grp * COG;
    int64_t ox = 0;
    for (; ox + PB <= g.wo; ox += PB)
      for (int o = 0; o < COG; o += COB)
        Block<CG, COG, COB, PB>(g, xrow + ox * g.stride * ps, ps, wg.data() + o, yrow + ox * g.cout + o);
    for (; ox < g.wo; ++ox)
      for (int o = 0; o < COG; o += COB)
        Block<CG, COG, COB, 1>(g, xrow + ox * g.stride * ps, ps, wg.data() + o, yrow + ox * g.cout + o);
  }
}

using RowsFn = void (*)(const Geometry&, const float*, const float*, float*, int64_t, int64_t, int64_t, int64_t);

RowsFn PickRows(int64_t cg, int64_t cog) {
  if (cg != cog) return nullptr;
  switch (cog) {
    case 8: return Rows<8, 8>;
    case 16: return Rows<16, 16>;
    case 32: return Rows<32, 32>;
    case 64: return Rows<64, 64>;
    default: return nullptr;
  }
}

struct Progress {
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};
};

ffi::Error GroupedConv(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> w,
                       ffi::ResultBuffer<ffi::F32> y, int64_t stride, int64_t padding, int64_t groups) {
  auto xd = x.dimensions(), wd = w.dimensions(), yd = y->dimensions();
  if (xd.size() != 4 || wd.size() != 4 || yd.size() != 4)
    return ffi::Error::InvalidArgument("grouped_conv: rank-4 NHWC input, HWIO kernel and NHWC output expected");
  if (stride < 1 || padding < 0 || groups < 1 || wd[3] % groups)
    return ffi::Error::InvalidArgument("grouped_conv: bad stride, padding or groups");
  Geometry g{xd[0], xd[1], xd[2], xd[3], padding, xd[1] + 2 * padding, xd[2] + 2 * padding, wd[0], wd[1],
             wd[2], wd[3], wd[3] / groups, yd[1], yd[2], stride, groups};
  if (g.cg * groups != g.c || yd[0] != g.n || yd[3] != g.cout || g.ho != (g.hp - g.kh) / stride + 1 ||
      g.wo != (g.wp - g.kw) / stride + 1 || g.ho < 1 || g.wo < 1)
    return ffi::Error::InvalidArgument("grouped_conv: inconsistent shapes");
  RowsFn rows = PickRows(g.cg, g.cog);
  if (rows == nullptr) return ffi::Error::InvalidArgument("grouped_conv: unsupported channels per group");
  if (g.cg < 32 && padding != 0) return ffi::Error::InvalidArgument("grouped_conv: pad narrow groups first");
  const float* xp = x.typed_data();
  const float* wp = w.typed_data();
  float* yp = y->typed_data();
  // A task is a chunk of output rows of one group, and the groups of a chunk are consecutive tasks: the input
  // rows they share (about 1 MiB) stay in cache while the threads go through them. Groups that copy their input
  // take all rows at once (a chunk would copy its halo rows again).
  constexpr int64_t kChunkBytes = 1 << 20;
  const int64_t row_bytes = g.wp * g.c * int64_t{sizeof(float)};
  const int64_t chunk = g.cg >= 32 ? g.ho
      : std::clamp<int64_t>((kChunkBytes / row_bytes - (g.kh - g.stride)) / g.stride, 1, g.ho);
  const int64_t chunks = (g.ho + chunk - 1) / chunk;
  const int64_t tasks = g.n * chunks * g.groups;
  auto progress = std::make_shared<Progress>();
  // Run by this thread and by helpers from XLA's intra-op pool. A helper that starts after every task is taken
  // touches only `progress` (which its own copy of the shared_ptr keeps alive), never g or the buffers.
  auto work = [=, &g]() {
    for (int64_t t; (t = progress->next.fetch_add(1)) < tasks;) {
      const int64_t grp = t % g.groups, r = t / g.groups, oy0 = (r % chunks) * chunk;
      rows(g, xp, wp, yp, r / chunks, grp, oy0, std::min(oy0 + chunk, g.ho));
      progress->done.fetch_add(1);
    }
  };
  const int64_t helpers = std::min<int64_t>(pool.num_threads(), tasks) - 1;
  for (int64_t i = 0; i < helpers; ++i) pool.Schedule([work]() { work(); });
  work();
  while (progress->done.load() < tasks) std::this_thread::yield();  // the tasks helpers took
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(HrjaxGroupedConv, GroupedConv,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("stride")
                                  .Attr<int64_t>("padding")
                                  .Attr<int64_t>("groups"));
