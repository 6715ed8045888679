#!/usr/bin/env python3
"""Runs the kernels that scripts/emit-tc-cases.mjs wrote (default folder .gpu-cases/) on a CUDA GPU:
compiles each .cu with NVRTC (ctypes; falls back to `nvcc -cubin`), launches it through the CUDA driver
API (ctypes) on torch-allocated buffers, checks it against torch in fp32 (TF32 off) and times it with
CUDA events (median of 50 launches, queued behind a sleep kernel so launch overhead is not measured),
next to the matching torch op (cuDNN conv in channels_last fp16, cuBLAS matmul).

    python3 scripts/gpu-tc-check.py [.gpu-cases] [--filter SUBSTR] [--no-time] [--iters 50]

Self-contained: needs only torch. One failing case never stops the others. Exit code 1 if any failed.
"""
import argparse
import ctypes
import glob
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

import torch
import torch.nn.functional as F

# ----------------------------------------------------------------------------------------------------
# CUDA driver + NVRTC through ctypes

cuda = None  # libcuda, loaded in main() (compile_cubin works without a driver)


def ck(res, what):
    if res != 0:
        name = ctypes.c_char_p()
        cuda.cuGetErrorName(res, ctypes.byref(name))
        raise RuntimeError(f"{what} failed: {res} {name.value.decode() if name.value else ''}")


def find_nvrtc():
    pats = [os.environ.get("NVRTC_LIB", ""), "/usr/local/cuda/lib64/libnvrtc.so*", "/usr/local/cuda-*/lib64/libnvrtc.so*"]
    for sp in sys.path:
        pats += [os.path.join(sp, "nvidia", "cu13", "lib", "libnvrtc.so*"), os.path.join(sp, "nvidia", "cuda_nvrtc", "lib", "libnvrtc.so*"),
                 os.path.join(sp, "torch", "lib", "libnvrtc*.so*")]
    for pat in pats:
        if not pat:
            continue
        for p in sorted(glob.glob(pat), key=len):
            if "builtins" in p or "alt" in os.path.basename(p):
                continue
            try:
                lib = ctypes.CDLL(p)
                lib.nvrtcVersion
                return lib, p
            except OSError:
                continue
    return None, None


nvrtc, NVRTC_PATH = find_nvrtc()


def compile_cubin(src, name, arch):
    """Returns (cubin bytes, log). Raises on error."""
    if nvrtc is not None:
        prog = ctypes.c_void_p()
        r = nvrtc.nvrtcCreateProgram(ctypes.byref(prog), src.encode(), f"{name}.cu".encode(), 0, None, None)
        if r:
            raise RuntimeError(f"nvrtcCreateProgram {r}")
        opts = [f"--gpu-architecture=sm_{arch}", "-std=c++17", "--ptxas-options=-v"]
        arr = (ctypes.c_char_p * len(opts))(*[o.encode() for o in opts])
        r = nvrtc.nvrtcCompileProgram(prog, len(opts), arr)
        n = ctypes.c_size_t()
        nvrtc.nvrtcGetProgramLogSize(prog, ctypes.byref(n))
        buf = ctypes.create_string_buffer(n.value)
        nvrtc.nvrtcGetProgramLog(prog, buf)
        log = buf.value.decode(errors="replace")
        if r:
            nvrtc.nvrtcDestroyProgram(ctypes.byref(prog))
            raise RuntimeError(f"NVRTC error {r}:\n{log}")
        nvrtc.nvrtcGetCUBINSize(prog, ctypes.byref(n))
        cub = ctypes.create_string_buffer(n.value)
        nvrtc.nvrtcGetCUBIN(prog, cub)
        nvrtc.nvrtcDestroyProgram(ctypes.byref(prog))
        return cub.raw, log
    nvcc = shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc"
    with tempfile.TemporaryDirectory() as d:
        cu, out = os.path.join(d, "k.cu"), os.path.join(d, "k.cubin")
        open(cu, "w").write(src)
        p = subprocess.run([nvcc, "-cubin", f"-arch=sm_{arch}", "-Xptxas", "-v", "-o", out, cu], capture_output=True, text=True)
        if p.returncode:
            raise RuntimeError(f"nvcc error:\n{p.stderr}")
        return open(out, "rb").read(), p.stderr


class Kernel:
    def __init__(self, cubin, name, smem):
        self.mod = ctypes.c_void_p()
        ck(cuda.cuModuleLoadData(ctypes.byref(self.mod), cubin), "cuModuleLoadData")
        self.fn = ctypes.c_void_p()
        ck(cuda.cuModuleGetFunction(ctypes.byref(self.fn), self.mod, name.encode()), "cuModuleGetFunction")
        if smem + 1024 > 48 * 1024:  # the 48 KiB default covers static shared memory too
            ck(cuda.cuFuncSetAttribute(self.fn, 8, smem), "cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES)")
        v = ctypes.c_int()
        cuda.cuFuncGetAttribute(ctypes.byref(v), 4, self.fn)
        self.regs = v.value
        cuda.cuFuncGetAttribute(ctypes.byref(v), 3, self.fn)
        self.local = v.value

    def launch(self, grid, block, smem, ptrs, stream):
        vals = [ctypes.c_void_p(p) for p in ptrs]
        arr = (ctypes.c_void_p * len(vals))(*[ctypes.cast(ctypes.byref(v), ctypes.c_void_p) for v in vals])
        ck(cuda.cuLaunchKernel(self.fn, grid[0], grid[1], grid[2], block[0], block[1], block[2], smem,
                               ctypes.c_void_p(stream), arr, None), "cuLaunchKernel")


# ----------------------------------------------------------------------------------------------------
# Reference semantics (mirror src/codegen/tc_gemm.ts Epilogue)

def act(v, e):
    a = e.get("actArgs") or []
    k = e.get("act", "none")
    if k == "none": return v
    if k == "relu": return torch.relu(v)
    if k == "relu6": return v.clamp(0, 6)
    if k == "clip": return v.clamp(a[0], a[1])
    if k == "sigmoid": return torch.sigmoid(v)
    if k == "silu": return F.silu(v)
    if k == "gelu_erf": return F.gelu(v)
    if k == "gelu_tanh": return F.gelu(v, approximate="tanh")
    if k == "hardswish": return v * ((v / 6 + 0.5).clamp(0, 1))
    if k == "hardsigmoid": return ((a[0] if a else 0.2) * v + (a[1] if len(a) > 1 else 0.5)).clamp(0, 1)
    if k == "leakyrelu": return F.leaky_relu(v, a[0] if a else 0.01)
    raise ValueError(k)


def epilogue(acc, e, bias, res):
    v = acc * e.get("alpha", 1.0)
    if e.get("bias"): v = v + bias
    if e.get("residual") and not e.get("residualAfterAct"): v = v + res
    v = act(v, e)
    if e.get("residual") and e.get("residualAfterAct"): v = v + res
    return v


def rand(shape, dtype, scale=1.0):
    return ((torch.rand(shape, device="cuda", dtype=torch.float32) * 2 - 1) * scale).to(dtype)


def gemm_strides(p):
    kn = p.get("bLayout") == "kn"
    batch = p.get("batch") or []
    lda = p.get("lda", p["k"]); ldb = p.get("ldb", p["n"] if kn else p["k"]); ldc = p.get("ldc", p["n"])

    def dflt(s, per):
        if s is not None: return s
        return [per * math.prod(batch[i + 1:]) for i in range(len(batch))]
    sA = dflt(p.get("strideA"), p["m"] * lda)
    sB = dflt(p.get("strideB"), p["k"] * ldb if kn else p["n"] * ldb)
    sC = dflt(p.get("strideC"), p["m"] * ldc)
    return kn, batch, lda, ldb, ldc, sA, sB, sC


def extent(sizes, strides, off):
    return off + sum((s - 1) * st for s, st in zip(sizes, strides)) + 1


class Case:
    """Buffers, launch pointers, reference and a torch baseline for one manifest entry."""

    def __init__(self, c):
        self.c = c
        e = c["epi"]
        gen = c["impl"] == "generic"
        dt = (c.get("opts") or {}).get("dtype") or c.get("dtype") or "float16"
        self.dt = torch.float32 if (gen and dt == "float32") else torch.float16
        self.tol = 1e-3 if self.dt == torch.float32 else 1e-2
        if c["op"] == "conv":
            self._conv(c["problem"], e)
        else:
            self._gemm(c["problem"], e)

    def _conv(self, p, e):
        opts = self.c.get("opts") or {}
        g = opts.get("groups", 1)
        nchw = opts.get("layout") == "nchw"
        creal = self.c.get("cReal") or p["c"]
        Cg = p["c"] // g
        x = rand((p["n"], p["c"], p["h"], p["w"]), torch.float32)
        w = rand((p["k"], Cg, p["r"], p["s"]), torch.float32, 2.0 / math.sqrt(p["r"] * p["s"] * Cg))
        if creal < p["c"]:  # the engine's zero channel padding
            x[:, creal:] = 0
            w[:, creal:] = 0
        x, w = x.to(self.dt), w.to(self.dt)
        bias = rand((p["k"],), torch.float32, 0.5)
        pq = (p["n"], p["k"], p["p"], p["q"])
        res = rand(pq, self.dt)
        self.x = x.contiguous() if nchw else x.permute(0, 2, 3, 1).contiguous()
        self.w = w.contiguous() if nchw else w.permute(0, 2, 3, 1).contiguous()
        self.res = res.contiguous() if nchw else res.permute(0, 2, 3, 1).contiguous()
        self.bias = bias
        self.y = torch.empty_like(self.res)
        self.out = self.y
        self.ptrs = {"x": self.x.data_ptr(), "w": self.w.data_ptr(), "bias": bias.data_ptr(), "residual": self.res.data_ptr(), "y": self.y.data_ptr()}
        # bottom/right pads implied by p, q
        ph_end = (p["p"] - 1) * p["strideH"] + p["dilH"] * (p["r"] - 1) + 1 - p["h"] - p["padH"]
        pw_end = (p["q"] - 1) * p["strideW"] + p["dilW"] * (p["s"] - 1) + 1 - p["w"] - p["padW"]
        xf = F.pad(x.float(), (p["padW"], max(0, pw_end), p["padH"], max(0, ph_end)))
        ref = F.conv2d(xf, w.float(), None, (p["strideH"], p["strideW"]), 0, (p["dilH"], p["dilW"]), g)
        ref = ref[:, :, :p["p"], :p["q"]]
        ref = epilogue(ref, e, bias.view(1, -1, 1, 1), res.float())
        self.ref = ref.contiguous() if nchw else ref.permute(0, 2, 3, 1).contiguous()
        self.view = lambda: self.y
        # torch baseline: cuDNN conv (fp16 channels_last or fp32 NCHW), bias fused by cuDNN where it can
        xr, wr = (x[:, :creal].contiguous(), w[:, :creal].contiguous()) if creal < p["c"] else (x, w)  # cuDNN gets the real c
        xb = xr.to(memory_format=torch.channels_last) if self.dt == torch.float16 else xr
        wb = wr.to(memory_format=torch.channels_last) if self.dt == torch.float16 else wr
        bb = bias.to(self.dt) if e.get("bias") else None
        st, pd, dl = (p["strideH"], p["strideW"]), (p["padH"], p["padW"]), (p["dilH"], p["dilW"])
        sym = ph_end == p["padH"] and pw_end == p["padW"]
        self.torch_fn = (lambda: F.conv2d(xb, wb, bb, st, pd, dl, g)) if sym else None

    def _gemm(self, p, e):
        c = self.c
        kn, batch, lda, ldb, ldc, sA, sB, sC = gemm_strides(p)
        offA, offB, offC = c.get("offA", 0), c.get("offB", 0), c.get("offC", 0)
        bs = list(batch)
        aSz, aSt = bs + [p["m"], p["k"]], list(sA) + [lda, 1]
        bSz, bSt = (bs + [p["k"], p["n"]], list(sB) + [ldb, 1]) if kn else (bs + [p["n"], p["k"]], list(sB) + [ldb, 1])
        cSz, cSt = bs + [p["m"], p["n"]], list(sC) + [ldc, 1]
        A = rand((extent(aSz, aSt, offA) + 8,), self.dt)
        B = rand((extent(bSz, bSt, offB) + 8,), self.dt, 2.0 / math.sqrt(p["k"]))
        nC = extent(cSz, cSt, offC) + 8
        R = rand((nC,), self.dt)
        self.C = torch.empty((nC,), device="cuda", dtype=self.dt)
        bias = rand((p["n"],), torch.float32, 0.5)
        self.bias = bias
        Av = torch.as_strided(A, aSz, aSt, offA)
        Bv = torch.as_strided(B, bSz, bSt, offB)
        Rv = torch.as_strided(R, cSz, cSt, offC)
        Bm = Bv if kn else Bv.transpose(-1, -2)
        ref = torch.matmul(Av.float(), Bm.float())
        self.ref = epilogue(ref, e, bias, Rv.float())
        self.view = lambda: torch.as_strided(self.C, cSz, cSt, offC)
        self.out = self.C
        esz = self.C.element_size()
        self.ptrs = {"a": A.data_ptr() + offA * esz, "b": B.data_ptr() + offB * esz, "bias": bias.data_ptr(),
                     "residual": R.data_ptr() + offC * esz, "c": self.C.data_ptr() + offC * esz}
        self.keep = (A, B, R)
        mask = torch.ones((nC,), device="cuda", dtype=torch.bool)
        torch.as_strided(mask, cSz, cSt, offC).fill_(False)
        self.outside = mask  # elements the kernel must not touch
        Ab, Bb = Av, Bm
        if not batch and e.get("bias"):
            bb = bias.to(self.dt)
            self.torch_fn = lambda: torch.addmm(bb, Ab, Bb)
        else:
            self.torch_fn = lambda: torch.matmul(Ab, Bb)

    def poison(self):
        self.out.view(torch.int16 if self.dt == torch.float16 else torch.int32).fill_(-1)  # NaN bits

    def check(self):
        torch.cuda.synchronize()
        y = self.view().float()
        nan = torch.isnan(y).sum().item()
        finite_ref = torch.isfinite(self.ref)
        err = (y - self.ref).abs()
        err = torch.where(torch.isnan(err), torch.zeros_like(err), err)
        rng = self.ref.abs().max().item() or 1.0
        rel = err.max().item() / rng
        stray = 0
        if hasattr(self, "outside"):
            o = self.out.float()[self.outside]
            stray = int((~torch.isnan(o)).sum().item())
        ok = nan == 0 and stray == 0 and rel <= self.tol and bool(finite_ref.all())
        return ok, rel, nan, stray


def median_ms(fn, iters, stream):
    """Median GPU time of `fn` over `iters` launches, queued behind a sleep so CPU launch cost is hidden."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    evs = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(iters)]
    try:
        torch.cuda._sleep(20_000_000)
    except Exception:
        pass
    for a, b in evs:
        a.record(stream)
        fn()
        b.record(stream)
    torch.cuda.synchronize()
    return statistics.median(a.elapsed_time(b) for a, b in evs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir", nargs="?", default=".gpu-cases")
    ap.add_argument("--filter", default="")
    ap.add_argument("--no-time", action="store_true")
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--start-after", default="", help="skip cases up to and including this id (used to resume after a crash)")
    ap.add_argument("--json", default="", help="also write per-case results to this JSON file (appended to when resuming)")
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    man = json.load(open(os.path.join(args.dir, "manifest.json")))
    man = [c for c in man if args.filter in c["id"]]
    if args.start_after:
        ids = [c["id"] for c in man]
        man = man[ids.index(args.start_after) + 1:] if args.start_after in ids else man
    global cuda
    cuda = ctypes.CDLL("libcuda.so.1")
    torch.zeros(1, device="cuda")
    ctx = ctypes.c_void_p()
    cuda.cuCtxGetCurrent(ctypes.byref(ctx))
    if not ctx.value:
        dev = ctypes.c_int()
        ck(cuda.cuDeviceGet(ctypes.byref(dev), torch.cuda.current_device()), "cuDeviceGet")
        ck(cuda.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev), "cuDevicePrimaryCtxRetain")
        ck(cuda.cuCtxSetCurrent(ctx), "cuCtxSetCurrent")
    maj, mnr = torch.cuda.get_device_capability()
    arch = f"{maj}{mnr}"
    print(f"device: {torch.cuda.get_device_name()} sm_{arch}, torch {torch.__version__}, NVRTC: {NVRTC_PATH or 'none (nvcc fallback)'}")
    if nvrtc is not None:
        a, b = ctypes.c_int(), ctypes.c_int()
        nvrtc.nvrtcVersion(ctypes.byref(a), ctypes.byref(b))
        print(f"NVRTC version {a.value}.{b.value}")

    t0 = time.time()
    srcs = {c["id"]: open(os.path.join(args.dir, c["file"])).read() for c in man}

    def comp(c):
        try:
            return c["id"], compile_cubin(srcs[c["id"]], c["name"], arch), None
        except Exception as ex:
            return c["id"], None, str(ex)
    with ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 4)) as ex:
        compiled = {i: (cb, err) for i, cb, err in ex.map(comp, man)}
    print(f"compiled {sum(1 for v in compiled.values() if v[0])}/{len(man)} kernels in {time.time() - t0:.1f}s")

    stream = torch.cuda.current_stream()
    sh = stream.cuda_stream
    rows, errors = [], {}
    resumed_rc = None
    hdr = f"{'case':40} {'kernel config':34} {'ok':4} {'rel.err':>8} {'regs':>4} {'us':>9} {'TF/s':>6} {'torch us':>9} {'TF/s':>6} {'x':>5}"
    print(hdr)
    print("-" * len(hdr))
    for c in man:
        cid = c["id"]
        cfg = "_".join(c["name"].split("_")[2:-1])[:34]
        try:
            (cub, log), err = compiled[cid]
        except TypeError:
            cub, err = None, compiled[cid][1]
        if cub is None:
            print(f"{cid:40} COMPILE FAILED: {(err or '')[:2000]}")
            errors[cid] = "compile: " + (err or "")[:300].replace("\n", " ")
            continue
        try:
            if "warning" in log.lower():
                print(f"  [{cid}] compiler warnings: {log.strip()[:500]}")
            k = Kernel(cub, c["name"], c["sharedBytes"])
            cs = Case(c)
            ws = None
            if c["workspaceBytes"]:
                ws = torch.zeros((c["workspaceBytes"],), device="cuda", dtype=torch.uint8)
            ptrs = [ws.data_ptr() if q["name"] == "workspace" else cs.ptrs[q["name"]] for q in c["params"]]
            run = lambda: k.launch(c["grid"], c["block"], c["sharedBytes"], ptrs, sh)
            cs.poison()
            run()
            ok, rel, nan, stray = cs.check()
            us = tf = tus = ttf = None
            flops = c["flops"]
            if c.get("cReal"):  # count the real channels, not the zero padding
                flops = flops * c["cReal"] // c["problem"]["c"]
            if c.get("time") and not args.no_time:
                ms = median_ms(run, args.iters, stream)
                us, tf = ms * 1e3, flops / (ms * 1e-3) / 1e12
                if cs.torch_fn is not None and not c.get("noBaseline"):
                    try:
                        tms = median_ms(cs.torch_fn, args.iters, stream)
                        tus, ttf = tms * 1e3, flops / (tms * 1e-3) / 1e12
                    except Exception as ex:
                        print(f"  [{cid}] torch baseline failed: {ex}")
                # outputs must be the same after many launches (split-K counters reset, no races)
                cs.poison()
                run()
                ok2, rel2, nan2, stray2 = cs.check()
                if not ok2:
                    ok, rel, nan, stray = ok2, max(rel, rel2), nan2, stray2
            flag = "ok" if ok else "FAIL"
            note = "" if ok else f"  (unwritten={nan} stray={stray} tol={cs.tol})"
            f = lambda v, w, p: f"{v:{w}.{p}f}" if v is not None else " " * (w - 1) + "-"
            sp = f"{tus / us:5.2f}" if (us and tus) else "    -"
            print(f"{cid:40} {cfg:34} {flag:4} {rel:8.1e} {k.regs:4d} {f(us, 9, 1)} {f(tf, 6, 1)} {f(tus, 9, 1)} {f(ttf, 6, 1)} {sp}{note}"
                  + (f" local={k.local}B" if k.local else ""))
            rows.append(dict(id=cid, group=c.get("group"), count=c.get("count", 1), ok=ok, us=us, tus=tus, flops=flops,
                             rel=rel, regs=k.regs, cfg=cfg, name=c["name"], unwritten=nan, stray=stray))
            del cs, ws
        except Exception as ex:
            print(f"{cid:40} ERROR: {ex}")
            traceback.print_exc(limit=2)
            errors[cid] = str(ex)[:300].replace("\n", " ")
            try:
                torch.cuda.synchronize()
            except Exception as ex2:
                print(f"CUDA context is broken after {cid} ({ex2}); resuming the remaining cases in a new process", flush=True)
                cmd = [sys.executable, os.path.abspath(__file__), args.dir, "--filter", args.filter, "--iters", str(args.iters),
                       "--start-after", cid] + (["--no-time"] if args.no_time else [])
                resumed_rc = subprocess.call(cmd + (["--json", args.json + ".resumed.json"] if args.json else []))
                break
    if args.json:
        json.dump(dict(rows=rows, errors=errors), open(args.json, "w"), indent=1)
    # compact summary last: the device tool returns only the tail of the output
    print("\n=== SUMMARY (timed cases: us = median GPU time; x = torch time / ours, >1 means we are faster) ===")
    for r in rows:
        if r["us"] is None:
            continue
        t = f"{r['tus']:8.1f} {r['tus'] / r['us']:5.2f}" if r["tus"] else "       -     -"
        print(f"{r['id'][:42]:42} {r['cfg'][:24]:24} {'ok' if r['ok'] else 'FAIL':4} {r['us']:8.1f} {r['flops'] / (r['us'] * 1e-6) / 1e12:6.1f} {t}")
    groups = {}
    for r in rows:
        if r["us"] is None or not r["group"] or r["group"].startswith("tune_"):
            continue
        gsum = groups.setdefault(r["group"], [0.0, 0.0, 0.0, True])
        gsum[0] += r["us"] * r["count"]
        gsum[2] += r["flops"] * r["count"]
        if r["tus"] is None:
            gsum[3] = False
        else:
            gsum[1] += r["tus"] * r["count"]
    if groups:
        print("per-group totals (layer time x occurrences in the network; torch = the bare conv/matmul, no fused epilogue):")
        for g, (ours, theirs, fl, full) in groups.items():
            t = f"{theirs / 1e3:8.3f} ms" if full else "       -"
            print(f"  {g:24} ours {ours / 1e3:8.3f} ms ({fl / (ours * 1e-6) / 1e12:6.1f} TF/s)   torch {t}")
    bad = [r for r in rows if not r["ok"]]
    for r in bad:
        print(f"FAIL {r['id']}: rel.err {r['rel']:.2e} unwritten {r['unwritten']} stray {r['stray']} ({r['name']})")
    for cid, msg in errors.items():
        print(f"FAIL {cid}: {msg}")
    done = len(rows) + len(errors)
    print(f"\n{len(rows) - len(bad)} passed, {len(bad) + len(errors)} failed" + (f" (of the {done} cases run by this process; the resumed process reported its own)" if resumed_rc is not None else ""))
    sys.exit(1 if bad or errors or resumed_rc else 0)


if __name__ == "__main__":
    main()
