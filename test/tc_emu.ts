// CPU emulator of the CUDA subset the tensor-core kernels use (tc_gemm.ts, tc_conv.ts, tc_int8.ts), shared by
// test/codegen-tc.test.ts and test/int8.test.ts: the generated source with TC_HELPERS (and TC_S8_HELPERS)
// replaced by this prelude compiles with g++ and runs one fiber per CUDA thread.
export const EMU_PRELUDE = String.raw`// CPU emulation of the CUDA subset used by tsrt tc kernels: CUDA threads are fibers on one OS thread, CTAs in
// sequence, warp collectives (ldmatrix, mma.sync) through per-warp exchange buffers, cp.async groups
// performed at issue (EMU_EARLY) or at wait_group (default), bounds checks on shared memory.
#include <cstdint>
#include <cstring>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ucontext.h>
#include <vector>
#include <atomic>
#include <algorithm>
#include <functional>
using std::min; using std::max;
struct dim3_ { unsigned x = 0, y = 0, z = 0; };
// one OS thread; every CUDA thread is a fiber, switched only at barriers (cooperative, round-robin)
struct Fiber { ucontext_t ctx; dim3_ idx; bool done; char* stack; };
static Fiber g_f[1024];
static int g_nf = 0, g_cur = 0;
static ucontext_t g_main;
static dim3_ blockIdx, gridDim;
#define threadIdx (g_f[g_cur].idx)
static inline void yield_() { swapcontext(&g_f[g_cur].ctx, &g_main); }
struct Bar { int count = 0, arrived = 0, gen = 0;
  void wait() { const int g = gen; if (++arrived == count) { arrived = 0; ++gen; } else { while (gen == g) yield_(); } } };
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __restrict__
#define __shared__ static
#define __align__(n)
alignas(128) static unsigned char tc_smem[256 * 1024];
static size_t g_smem_bytes = 0;
static Bar g_cta_bar;
static Bar g_warp_bar[32];
static void emu_fail(const char* what, long long v) { fprintf(stderr, "EMU FAIL: %s (%lld) block %u,%u,%u thread %u\n", what, v, blockIdx.x, blockIdx.y, blockIdx.z, threadIdx.x); fflush(stderr); std::_Exit(3); }
inline void __syncthreads() { g_cta_bar.wait(); }
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline unsigned atomicAdd(unsigned* p, unsigned v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
typedef unsigned short tc_half;
typedef unsigned int u32;
static inline int lane_() { return threadIdx.x & 31; }
static inline int warp_() { return threadIdx.x >> 5; }
static inline void warp_sync() { g_warp_bar[warp_()].wait(); }
inline u32 smem_u32(const void* p) { return (u32)((const unsigned char*)p - tc_smem); }
inline float h2f(tc_half h) { _Float16 f; memcpy(&f, &h, 2); return (float)f; }
inline tc_half f2h(float f) { _Float16 h = (_Float16)f; tc_half r; memcpy(&r, &h, 2); return r; }
inline u32 pack_h2(float lo, float hi) { return (u32)f2h(lo) | ((u32)f2h(hi) << 16); }
inline float lo_h2f(u32 v) { return h2f((tc_half)(v & 0xffffu)); }
inline float hi_h2f(u32 v) { return h2f((tc_half)(v >> 16)); }
struct Cp { u32 dst; const void* src; bool ok; };
static std::vector<Cp> g_pending[1024];
static std::vector<std::vector<Cp>> g_groups[1024];
#define t_pending (g_pending[g_cur])
#define t_groups (g_groups[g_cur])
struct Buf { const unsigned char* p; size_t n; };
static std::vector<Buf> g_bufs;
static void cp_do(const Cp& c) {
  if (c.dst % 16 || c.dst + 16 > g_smem_bytes) emu_fail("cp.async dst out of shared range", c.dst);
  if (c.ok) {
    const unsigned char* s = (const unsigned char*)c.src;
    bool inside = false;
    for (auto& b : g_bufs) if (s >= b.p && s + 16 <= b.p + b.n) inside = true;
    if (!inside) emu_fail("cp.async src outside every buffer", (long long)(size_t)s);
    if (((size_t)s) % 16) emu_fail("cp.async src not 16-byte aligned", (long long)(size_t)s);
    memcpy(tc_smem + c.dst, s, 16);
  } else memset(tc_smem + c.dst, 0, 16);
}
inline void cp_async16(u32 dst, const void* src, bool ok) {
#ifdef EMU_EARLY
  cp_do(Cp{dst, src, ok});
#else
  t_pending.push_back(Cp{dst, src, ok});
#endif
}
inline void cp_async_commit() { t_groups.push_back(t_pending); t_pending.clear(); }
template <int N> inline void cp_async_wait() {
  while ((int)t_groups.size() > N) { for (auto& c : t_groups.front()) cp_do(c); t_groups.erase(t_groups.begin()); }
}
struct WarpX { u32 addr[32]; u32 a[32][4]; u32 b[32][2]; float f[32]; };
static WarpX g_wx[32];
static inline uint16_t sm16(u32 addr, int i) {
  if (addr % 16 || addr + 16 > g_smem_bytes) emu_fail("ldmatrix address", addr);
  uint16_t v; memcpy(&v, tc_smem + addr + 2 * i, 2); return v;
}
static void ldsm_impl(u32* r, u32 addr, bool trans) {
  const int l = lane_(), w = warp_();
  g_wx[w].addr[l] = addr; warp_sync();
  for (int i = 0; i < 4; ++i) {
    uint16_t lo, hi;
    if (!trans) { const u32 a = g_wx[w].addr[i * 8 + l / 4]; lo = sm16(a, 2 * (l % 4)); hi = sm16(a, 2 * (l % 4) + 1); }
    else { lo = sm16(g_wx[w].addr[i * 8 + 2 * (l % 4)], l / 4); hi = sm16(g_wx[w].addr[i * 8 + 2 * (l % 4) + 1], l / 4); }
    r[i] = (u32)lo | ((u32)hi << 16);
  }
  warp_sync();
}
inline void ldsm_x4(u32* r, u32 addr) { ldsm_impl(r, addr, false); }
inline void ldsm_x4_t(u32* r, u32 addr) { ldsm_impl(r, addr, true); }
static inline float half_of(u32 v, int hi) { return hi ? hi_h2f(v) : lo_h2f(v); }
inline void mma16816(float* d, const u32* a, const u32* b) {
  const int l = lane_(), w = warp_();
  for (int i = 0; i < 4; ++i) g_wx[w].a[l][i] = a[i];
  g_wx[w].b[l][0] = b[0]; g_wx[w].b[l][1] = b[1];
  warp_sync();
  for (int e = 0; e < 4; ++e) {
    const int row = l / 4 + (e >= 2 ? 8 : 0), col = 2 * (l % 4) + (e & 1);
    double s = d[e];
    for (int k = 0; k < 16; ++k) {
      const float av = half_of(g_wx[w].a[(row % 8) * 4 + (k % 8) / 2][(row / 8) + 2 * (k / 8)], k % 2);
      const float bv = half_of(g_wx[w].b[col * 4 + (k % 8) / 2][k / 8], k % 2);
      s += (double)av * bv;
    }
    d[e] = (float)s;
  }
  warp_sync();
}
// the attention kernels' row reductions (test/kernel_emu.ts adds a template for other types)
inline float __shfl_xor_sync(unsigned mask, float v, int m) {
  if (mask != 0xffffffffu) emu_fail("partial shuffle mask", mask);
  const int l = lane_(), w = warp_();
  g_wx[w].f[l] = v; warp_sync();
  const float r = g_wx[w].f[l ^ m]; warp_sync();
  return r;
}
inline void st_cg4(float* p, float a, float b, float c, float d) { p[0] = a; p[1] = b; p[2] = c; p[3] = d; }
inline void ld_cg4(const float* p, float* v) { v[0] = p[0]; v[1] = p[1]; v[2] = p[2]; v[3] = p[3]; }
static const std::function<void()>* g_fn;
static void fiber_entry() { (*g_fn)(); g_f[g_cur].done = true; }
static void run_grid3(unsigned gx, unsigned gy, unsigned gz, unsigned bx, size_t smem, const std::function<void()>& fn) {
  g_smem_bytes = smem;
  g_fn = &fn;
  const size_t STACK = 256 * 1024;
  for (unsigned t = 0; t < bx; ++t) if (!g_f[t].stack) g_f[t].stack = (char*)malloc(STACK);
  gridDim.x = gx; gridDim.y = gy; gridDim.z = gz;
  for (unsigned z = 0; z < gz; ++z) for (unsigned y = 0; y < gy; ++y) for (unsigned x = 0; x < gx; ++x) {
    blockIdx.x = x; blockIdx.y = y; blockIdx.z = z;
    g_cta_bar = Bar{(int)bx};
    for (unsigned w = 0; w < (bx + 31) / 32; ++w) g_warp_bar[w] = Bar{32};
    memset(tc_smem, 0xAB, sizeof(tc_smem));
    g_nf = bx;
    for (unsigned t = 0; t < bx; ++t) {
      Fiber& f = g_f[t];
      f.idx.x = t; f.done = false;
      g_pending[t].clear(); g_groups[t].clear();
      getcontext(&f.ctx);
      f.ctx.uc_stack.ss_sp = f.stack; f.ctx.uc_stack.ss_size = STACK; f.ctx.uc_link = &g_main;
      makecontext(&f.ctx, fiber_entry, 0);
    }
    for (;;) {
      bool any = false;
      for (int t = 0; t < g_nf; ++t) {
        if (g_f[t].done) continue;
        any = true; g_cur = t;
        swapcontext(&g_main, &g_f[t].ctx);
      }
      if (!any) break;
    }
  }
}
static void run_grid(unsigned gx, unsigned gy, unsigned bx, size_t smem, const std::function<void()>& fn) { run_grid3(gx, gy, 1, bx, smem, fn); }
static unsigned char* load_file(const char* path, size_t n) {
  unsigned char* p = (unsigned char*)aligned_alloc(256, (n + 255) / 256 * 256 + 256);
  FILE* f = fopen(path, "rb"); if (!f) { perror(path); exit(2); }
  if (fread(p, 1, n, f) != n) { fprintf(stderr, "short read %s\n", path); exit(2); }
  fclose(f); g_bufs.push_back(Buf{p, n}); return p;
}
static void save_file(const char* path, const unsigned char* p, size_t n) { FILE* f = fopen(path, "wb"); fwrite(p, 1, n, f); fclose(f); }
inline float __expf(float x) { return expf(x); }
inline float __fdividef(float a, float b) { return std::isinf(b) ? (std::isinf(a) ? NAN : 0.0f * a) : a / b; }
// [int8] mma.sync.m16n8k32.row.col.s32.s8.s8.s32, from the PTX ISA fragment tables (not from the fp16 layout,
// so the emulator checks the claim that the two coincide byte for byte): A a_i (4 regs x 4 bytes): row = g for
// i in 0..3 and 8..11, g + 8 otherwise; col = 4*t + (i & 3), + 16 for i >= 8. B b_i (2 regs x 4 bytes): row (k) =
// 4*t + (i & 3), + 16 for i >= 4; col = g. C/D as f32 m16n8: row g (+8 for c2, c3), col 2*t + (i & 1).
static inline int s8_of(u32 v, int byte) { return (int)(signed char)((v >> (8 * byte)) & 0xffu); }
inline void mma16832s8(int* d, const u32* a, const u32* b) {
  const int l = lane_(), w = warp_();
  for (int i = 0; i < 4; ++i) g_wx[w].a[l][i] = a[i];
  g_wx[w].b[l][0] = b[0]; g_wx[w].b[l][1] = b[1];
  warp_sync();
  for (int e = 0; e < 4; ++e) {
    const int row = l / 4 + (e >= 2 ? 8 : 0), col = 2 * (l % 4) + (e & 1);
    long long s = d[e];
    for (int k = 0; k < 32; ++k) {
      // element index i of A at (row, k): t = (k % 16) / 4, i = (k & 3) + 4 * (row >= 8) + 8 * (k >= 16)
      const int ai = (k & 3) + 4 * (row / 8) + 8 * (k / 16);
      const int av = s8_of(g_wx[w].a[(row % 8) * 4 + (k % 16) / 4][ai / 4], ai % 4);
      const int bi = (k & 3) + 4 * (k / 16);
      const int bv = s8_of(g_wx[w].b[col * 4 + (k % 16) / 4][bi / 4], bi % 4);
      s += (long long)av * bv;
    }
    if (s > 2147483647LL || s < -2147483648LL) emu_fail("s32 accumulator overflow", s);
    d[e] = (int)s;
  }
  warp_sync();
}
inline float __int_as_float(int x) { float f; memcpy(&f, &x, 4); return f; }
inline int __float_as_int(float x) { int i; memcpy(&i, &x, 4); return i; }
// round-to-nearest intrinsics (volatile: no contraction into an FMA, whatever the host compiler flags)
inline float __fmul_rn(float a, float b) { volatile float r = a * b; return r; }
inline float __fadd_rn(float a, float b) { volatile float r = a + b; return r; }
inline float __fsub_rn(float a, float b) { volatile float r = a - b; return r; }
inline float __fmaf_rn(float a, float b, float c) { return std::fmaf(a, b, c); } // one rounding (glibc: exact)
// PRMT: byte n of the result is byte (s >> 4n) & 7 of the 8 bytes {x, y}
inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s) {
  const unsigned long long v = ((unsigned long long)y << 32) | x;
  unsigned r = 0;
  for (int n = 0; n < 4; ++n) r |= (unsigned)((v >> (8 * ((s >> (4 * n)) & 7))) & 0xFF) << (8 * n);
  return r;
}
struct alignas(8) float2 { float x, y; };
inline float2 make_float2(float x, float y) { return float2{x, y}; }
inline int __float2int_rn(float x) { return (int)nearbyintf(x); }
// float64 ones of the int8 qlinear epilogue (IEEE double on the host as on the GPU; cvt.rni.s32.f64 saturates, NaN -> 0)
inline double __dmul_rn(double a, double b) { volatile double r = a * b; return r; }
inline double __dadd_rn(double a, double b) { volatile double r = a + b; return r; }
inline int __double2int_rn(double x) { return x != x ? 0 : x >= 2147483647.0 ? 2147483647 : x <= -2147483648.0 ? (-2147483647 - 1) : (int)nearbyint(x); }
`;

/** The warp-specialized wgmma kernels' synchronization (wgmma_ws.ts's WGMMA_WS_ASM_HELPERS replaced by this), for
 * the fp16 (codegen-wgmma-emu.test.ts) and int8 (int8-wgmma-emu.test.ts) emulators; goes after EMU_PRELUDE. */
export const WS_EMU = String.raw`// ---- warp-specialized kernels (wgmma_ws.ts): mbarriers, cp.async.mbarrier.arrive.noinc, named barriers ----
// An mbarrier (PTX ISA "Parallel Synchronization and Communication: mbarrier"): a phase completes when the
// pending arrival count reaches 0, which then resets to the init count; try_wait.parity P succeeds once the
// phase of parity P has completed, i.e. while the current phase's parity differs from P.
// cp.async.mbarrier.arrive.noinc: the thread's arrival happens when all its earlier cp.asyncs completed; here
// those copies (the uncommitted ones and every committed group) are taken off the thread and performed when
// the phase completes, the latest moment the ISA allows, so a consumer that reads a stage without waiting for
// its full barrier reads stale data (with EMU_EARLY they land at issue as before).
struct __attribute__((aligned(16))) float4 { float x, y, z, w; };
struct __attribute__((aligned(16))) uint4 { u32 x, y, z, w; };
struct MBar { int count = 0, pending = 0, phase = 0; std::vector<Cp> copies; };
static std::vector<std::pair<u32, MBar>> g_mbars;
static MBar& mbar_at(u32 bar) {
  if (bar % 8) emu_fail("mbarrier not 8-byte aligned", bar);
  for (auto& b : g_mbars) if (b.first == bar) return b.second;
  emu_fail("mbarrier used before mbarrier.init", bar);
  return g_mbars[0].second;
}
inline void mbar_init(u32 bar, u32 count) {
  if (count < 1) emu_fail("mbarrier count", count);
  for (auto& b : g_mbars) if (b.first == bar) { b.second = MBar{(int)count, (int)count, 0, {}}; return; }
  g_mbars.push_back({bar, MBar{(int)count, (int)count, 0, {}}});
}
inline void mbar_arrive(u32 bar) {
  MBar& b = mbar_at(bar);
  if (--b.pending == 0) { for (auto& c : b.copies) cp_do(c); b.copies.clear(); b.pending = b.count; ++b.phase; }
}
inline bool mbar_try_wait(u32 bar, u32 parity) {
  if (parity > 1) emu_fail("mbarrier parity", parity);
  if ((u32)(mbar_at(bar).phase & 1) != parity) return true;
  yield_();
  return false;
}
inline void mbar_wait(u32 bar, u32 parity) {
  for (long spins = 0; !mbar_try_wait(bar, parity); ++spins) if (spins > 20000) emu_fail("mbarrier wait never completes (deadlock)", bar);
}
inline void mbar_wait_bounded(u32 bar, u32 parity) { mbar_wait(bar, parity); }
inline void cp_async_mbar_arrive(u32 bar) {
  MBar& b = mbar_at(bar);
  for (auto& g : t_groups) b.copies.insert(b.copies.end(), g.begin(), g.end());
  b.copies.insert(b.copies.end(), t_pending.begin(), t_pending.end());
  t_groups.clear(); t_pending.clear();
  mbar_arrive(bar);
}
static Bar g_named[16];
inline void named_bar_sync(u32 id, u32 threads) {
  if (id == 0 || id > 15 || threads % 32) emu_fail("named barrier id/thread count", id);
  Bar& b = g_named[id];
  if (b.arrived == 0) b.count = (int)threads; else if (b.count != (int)threads) emu_fail("named barrier thread count differs", threads);
  b.wait();
}
template <int N> inline void setmaxnreg_dec() { static_assert(N % 8 == 0 && N >= 24 && N <= 256, "setmaxnreg range"); }
template <int N> inline void setmaxnreg_inc() { static_assert(N % 8 == 0 && N >= 24 && N <= 256, "setmaxnreg range"); }
`;
