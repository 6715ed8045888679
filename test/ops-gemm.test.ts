import { describe, expect, it } from 'vitest';
import '../src/ops/index.js';
import { getOp, type CpuCtx, type InferCtx } from '../src/ops/registry.js';
import { matmulF32, matmulF64 } from '../src/ops/gemm.js';
import { upgradeGraph } from '../src/onnx/import.js';
import { f16BitsToF32, fromF64, makeTensor } from '../src/ir/tensor.js';
import { opNode, vals } from './helpers.js';
import type { Attr, DType, Graph, Node, Tensor, TensorType } from '../src/ir/types.js';

const ctx: CpuCtx = { opset: 23, runGraph: () => { throw new Error('no subgraphs'); } };
const ictx = (n: number): InferCtx => ({ opset: 23, consts: new Array(n).fill(undefined), shapeValues: new Array(n).fill(undefined), freshDim: () => 'fresh' });

const node = (op: string, nIn: number, attrs: Record<string, Attr> = {}, nOut = 1): Node => opNode(op, nIn, attrs, nOut, `${op.toLowerCase()}_test`);
const t = (dims: number[], vals: number[], dtype: DType = 'float32'): Tensor => fromF64(dtype, dims, vals);
const run = (n: Node, ins: (Tensor | undefined)[]) => getOp(n.op)!.cpu(n, ins, ctx);
const int = (value: number): Attr => ({ kind: 'int', value });
const float = (value: number): Attr => ({ kind: 'float', value });
const str = (value: string): Attr => ({ kind: 'string', value });

/** Naive reference product for kernel checks. */
function naive(a: number[], b: number[], M: number, K: number, N: number, tA: boolean, tB: boolean): number[] {
  const out: number[] = [];
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += a[tA ? k * M + i : i * K + k] * b[tB ? j * K + k : k * N + j];
      out.push(s);
    }
  }
  return out;
}

describe('matmul kernels', () => {
  it('match a naive product for edge sizes and every transpose combination', () => {
    let seed = 1;
    const rnd = () => ((seed = (seed * 16807) % 2147483647) / 2147483647) - 0.5;
    for (const [M, K, N] of [[1, 1, 1], [1, 5, 3], [2, 3, 4], [3, 7, 5], [5, 4, 9], [7, 13, 6], [8, 2, 11]]) {
      for (const tA of [false, true]) {
        for (const tB of [false, true]) {
          const a = Array.from({ length: M * K }, rnd), b = Array.from({ length: K * N }, rnd);
          const want = naive(a, b, M, K, N, tA, tB);
          const o32 = new Float32Array(M * N + 3).fill(7);
          matmulF32(Float32Array.from(a), Float32Array.from(b), o32, { M, K, N, transA: tA, transB: tB, outOff: 2 });
          const o64 = new Float64Array(M * N);
          matmulF64(Float64Array.from(a), Float64Array.from(b), o64, { M, K, N, transA: tA, transB: tB });
          for (let i = 0; i < M * N; i++) {
            expect(o32[2 + i]).toBeCloseTo(want[i], 5);
            expect(o64[i]).toBeCloseTo(want[i], 12);
          }
          expect([o32[0], o32[1], o32[M * N + 2]]).toEqual([7, 7, 7]); // writes stay inside the block
        }
      }
    }
  });
});

describe('MatMul', () => {
  const mm = node('MatMul', 2);
  it('multiplies 2-D matrices', () => {
    const [y] = run(mm, [t([2, 3], [1, 2, 3, 4, 5, 6]), t([3, 2], [7, 8, 9, 10, 11, 12])]);
    expect(y.dims).toEqual([2, 2]);
    expect(vals(y)).toEqual([58, 64, 139, 154]);
  });
  it('promotes 1-D operands and drops the promoted dims', () => {
    expect(run(mm, [t([3], [1, 2, 3]), t([3], [4, 5, 6])])[0]).toMatchObject({ dims: [] });
    expect(vals(run(mm, [t([3], [1, 2, 3]), t([3], [4, 5, 6])])[0])).toEqual([32]);
    const [v] = run(mm, [t([2], [1, 2]), t([2, 3], [1, 2, 3, 4, 5, 6])]);
    expect(v.dims).toEqual([3]);
    expect(vals(v)).toEqual([9, 12, 15]);
    const [w] = run(mm, [t([2, 2, 3], [1, 0, 0, 0, 1, 0, 1, 1, 1, 2, 2, 2]), t([3], [1, 2, 3])]);
    expect(w.dims).toEqual([2, 2]);
    expect(vals(w)).toEqual([1, 2, 6, 12]);
  });
  it('broadcasts batch dims', () => {
    // A [2,1,1,2] x B [3,2,1] -> [2,3,1,1]
    const [y] = run(mm, [t([2, 1, 1, 2], [1, 2, 3, 4]), t([3, 2, 1], [1, 1, 2, 0, 0, 3])]);
    expect(y.dims).toEqual([2, 3, 1, 1]);
    expect(vals(y)).toEqual([3, 2, 6, 7, 6, 12]);
  });
  it('folds a shared B into one product and keeps the batch layout', () => {
    const a = Array.from({ length: 3 * 5 * 4 }, (_, i) => (i % 7) - 3), b = Array.from({ length: 4 * 2 }, (_, i) => i - 4);
    const [y] = run(mm, [t([3, 5, 4], a), t([4, 2], b)]);
    const want: number[] = [];
    for (let s = 0; s < 3; s++) want.push(...naive(a.slice(s * 20, s * 20 + 20), b, 5, 4, 2, false, false));
    expect(y.dims).toEqual([3, 5, 2]);
    expect(vals(y)).toEqual(want);
  });
  it('wraps int32 products like C and keeps int64 exact', () => {
    const [y] = run(mm, [t([1, 2], [65536, 3], 'int32'), t([2, 1], [65536, 5], 'int32')]);
    expect(y.dtype).toBe('int32');
    expect(vals(y)).toEqual([15]); // 2^32 wraps to 0
    const big = makeTensor('int64', [1, 1], BigInt64Array.of(3n ** 30n));
    const [z] = run(mm, [big, makeTensor('int64', [1, 1], BigInt64Array.of(3n))]);
    expect((z.data as BigInt64Array)[0]).toBe(3n ** 31n);
  });
  it('computes float16 in float32 and rounds once', () => {
    const [y] = run(mm, [t([1, 2], [0.5, 1.5], 'float16'), t([2, 1], [2, 4], 'float16')]);
    expect(y.dtype).toBe('float16');
    expect(f16BitsToF32((y.data as Uint16Array)[0])).toBe(7);
  });
  it('rejects mismatched inner dims, naming the node', () => {
    expect(() => run(mm, [t([2, 3], new Array(6).fill(0)), t([2, 2], new Array(4).fill(0))])).toThrow(/matmul_test.*inner dimensions/);
  });
  it('infers shapes with symbolic dims kept', () => {
    const ins: TensorType[] = [{ dtype: 'float32', shape: ['batch', 'seq', 768] }, { dtype: 'float32', shape: [768, 3072] }];
    expect(getOp('MatMul')!.infer(mm, ins, ictx(2))).toEqual([{ dtype: 'float32', shape: ['batch', 'seq', 3072] }]);
    const v: TensorType[] = [{ dtype: 'float32', shape: [4] }, { dtype: 'float32', shape: ['b', 4, 5] }];
    expect(getOp('MatMul')!.infer(mm, v, ictx(2))[0].shape).toEqual(['b', 5]);
  });
});

describe('Gemm', () => {
  const A = t([2, 3], [1, 2, 3, 4, 5, 6]), B = t([3, 2], [1, 0, 0, 1, 1, 1]); // AB = [[4,5],[10,11]]
  it('computes alpha*A*B + beta*C with C broadcast from [N], [M,1] and a scalar', () => {
    const g = node('Gemm', 3, { alpha: float(2), beta: float(0.5) });
    expect(vals(run(g, [A, B, t([2], [10, 20])])[0])).toEqual([13, 20, 25, 32]);
    expect(vals(run(g, [A, B, t([2, 1], [10, 20])])[0])).toEqual([13, 15, 30, 32]);
    expect(vals(run(g, [A, B, t([], [4])])[0])).toEqual([10, 12, 22, 24]);
    expect(vals(run(node('Gemm', 2), [A, B])[0])).toEqual([4, 5, 10, 11]);
  });
  it('transposes A and B', () => {
    const g = node('Gemm', 2, { transA: int(1), transB: int(1) });
    const [y] = run(g, [t([3, 2], [1, 4, 2, 5, 3, 6]), t([2, 3], [1, 0, 1, 0, 1, 1])]);
    expect(y.dims).toEqual([2, 2]);
    expect(vals(y)).toEqual([4, 5, 10, 11]);
  });
  it('works on float64 and int32', () => {
    expect(run(node('Gemm', 2), [t([2, 3], [1, 2, 3, 4, 5, 6], 'float64'), t([3, 2], [1, 0, 0, 1, 1, 1], 'float64')])[0].dtype).toBe('float64');
    const [y] = run(node('Gemm', 3), [t([2, 3], [1, 2, 3, 4, 5, 6], 'int32'), t([3, 2], [1, 0, 0, 1, 1, 1], 'int32'), t([2], [1, -1], 'int32')]);
    expect(y.dtype).toBe('int32');
    expect(vals(y)).toEqual([5, 4, 11, 10]);
  });
  it('rejects a C that does not broadcast unidirectionally', () => {
    expect(() => run(node('Gemm', 3), [A, B, t([3], [1, 2, 3])])).toThrow(/gemm_test.*C has shape \[3\]/);
    const ins: TensorType[] = [{ dtype: 'float32', shape: [5, 3] }, { dtype: 'float32', shape: [3, 2] }, { dtype: 'float32', shape: [4, 2] }];
    expect(() => getOp('Gemm')!.infer(node('Gemm', 3), ins, ictx(3))).toThrow(/does not broadcast/);
    ins[0] = { dtype: 'float32', shape: ['m', 3] }; // a symbolic M may be 4
    expect(getOp('Gemm')!.infer(node('Gemm', 3), ins, ictx(3))[0].shape).toEqual(['m', 2]);
  });
  it('infers [M, N] with symbolic M', () => {
    const ins: TensorType[] = [{ dtype: 'float32', shape: [512, 'n'] }, { dtype: 'float32', shape: [10, 512] }];
    const g = node('Gemm', 2, { transA: int(1), transB: int(1) });
    expect(getOp('Gemm')!.infer(g, ins, ictx(2))).toEqual([{ dtype: 'float32', shape: ['n', 10] }]);
  });
  it('drops the opset-6 broadcast attribute at import', () => {
    const g: Graph = {
      name: 'g', inputs: [], outputs: [], initializers: new Map(), valueTypes: new Map(), opset: 6,
      nodes: [node('Gemm', 3, { broadcast: int(1), alpha: float(2) })],
    };
    const up = upgradeGraph(g).nodes[0];
    expect(Object.keys(up.attrs)).toEqual(['alpha']);
    expect(upgradeGraph({ ...g, opset: 9 }).nodes[0].attrs).toEqual(g.nodes[0].attrs); // newer forms pass through untouched
  });
});

describe('Einsum', () => {
  const es = (eq: string, ...ins: Tensor[]) => run(node('Einsum', ins.length, { equation: str(eq) }), ins)[0];
  const m23 = t([2, 3], [1, 2, 3, 4, 5, 6]);
  it('transposes, sums and takes the trace and diagonal', () => {
    expect(es('ij->ji', m23)).toMatchObject({ dims: [3, 2] });
    expect(vals(es('ij->ji', m23))).toEqual([1, 4, 2, 5, 3, 6]);
    expect(vals(es('ij->', m23))).toEqual([21]);
    expect(vals(es('ij->j', m23))).toEqual([5, 7, 9]);
    const sq = t([3, 3], [1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(vals(es('ii', sq))).toEqual([15]); // implicit: no label appears once -> trace
    expect(vals(es('ii->i', sq))).toEqual([1, 5, 9]);
  });
  it('uses the implicit output (sorted letters that appear once)', () => {
    const y = es('ij,jk', m23, t([3, 1], [1, 1, 1]));
    expect(y.dims).toEqual([2, 1]);
    expect(vals(y)).toEqual([6, 15]);
    expect(es('ba', m23).dims).toEqual([3, 2]); // implicit output 'ab' transposes
  });
  it('contracts batched matmuls, outer products and chains', () => {
    const a = t([2, 1, 2], [1, 2, 3, 4]), b = t([2, 2, 1], [1, 1, 2, 0]);
    expect(vals(es('bij,bjk->bik', a, b))).toEqual([3, 6]);
    expect(vals(es('i,j->ij', t([2], [1, 2]), t([3], [1, 10, 100])))).toEqual([1, 10, 100, 2, 20, 200]);
    expect(vals(es('i,i', t([3], [1, 2, 3]), t([3], [4, 5, 6])))).toEqual([32]);
    const y = es('ij,jk,kl->il', m23, t([3, 2], [1, 0, 0, 1, 1, 1]), t([2, 1], [1, -1]));
    expect(vals(y)).toEqual([-1, -1]);
  });
  it('broadcasts ellipsis dims and puts them first in implicit mode', () => {
    const a = t([2, 1, 2], [1, 2, 3, 4]), b = t([2, 1], [1, 10]);
    const y = es('...ij,...jk->...ik', a, b);
    expect(y.dims).toEqual([2, 1, 1]);
    expect(vals(y)).toEqual([21, 43]);
    expect(es('...ij', t([4, 2, 3], new Array(24).fill(1))).dims).toEqual([4, 2, 3]);
    expect(vals(es('...i->...', t([2, 3], [1, 2, 3, 4, 5, 6])))).toEqual([6, 15]);
  });
  it('keeps integer dtypes and rejects bad equations with the node named', () => {
    const y = es('ij->i', t([2, 2], [1, 2, 3, 4], 'int64'));
    expect(y.dtype).toBe('int64');
    expect(vals(y)).toEqual([3, 7]);
    expect(() => es('ij,jk->ik', m23, m23)).toThrow(/einsum_test.*label 'j'/);
    expect(() => es('ijk->i', m23)).toThrow(/does not match input 0/);
    expect(() => es('ij->iz', m23)).toThrow(/'z' does not appear/);
  });
  it('infers symbolic output shapes', () => {
    const ins: TensorType[] = [{ dtype: 'float32', shape: ['b', 'h', 's', 64] }, { dtype: 'float32', shape: ['b', 'h', 't', 64] }];
    const n = node('Einsum', 2, { equation: str('bhsd,bhtd->bhst') });
    expect(getOp('Einsum')!.infer(n, ins, ictx(2))[0].shape).toEqual(['b', 'h', 's', 't']);
  });
});

describe('Attention', () => {
  const att = (attrs: Record<string, Attr>, ins: (Tensor | undefined)[], nOut = 1) =>
    getOp('Attention')!.cpu(node('Attention', ins.length, attrs, nOut), ins, ctx);
  // One head, one query, two keys: scores q.k = [1, 0] with scale 1 -> softmax [e/(e+1), 1/(e+1)].
  const Q = t([1, 1, 1, 2], [1, 0]), K = t([1, 1, 2, 2], [1, 0, 0, 1]), V = t([1, 1, 2, 1], [10, 20]);
  const p = Math.E / (Math.E + 1);
  it('computes softmax(QK^T * scale) V', () => {
    const [y] = att({ scale: float(1) }, [Q, K, V]);
    expect(y.dims).toEqual([1, 1, 1, 1]);
    expect(vals(y)[0]).toBeCloseTo(10 * p + 20 * (1 - p), 5);
    // Default scale 1/sqrt(2).
    const e = Math.exp(1 / Math.SQRT2);
    expect(vals(att({}, [Q, K, V])[0])[0]).toBeCloseTo((10 * e + 20) / (e + 1), 5);
  });
  it('applies bool and short float masks and softcap', () => {
    expect(vals(att({}, [Q, K, V, t([1], [1], 'bool')])[0])[0]).toBeCloseTo(10, 5); // key 1 lies past the mask: -inf
    const [y] = att({ scale: float(1) }, [Q, K, V, t([2], [0, 1], 'bool')]);
    expect(vals(y)[0]).toBeCloseTo(20, 5);
    const [z] = att({ scale: float(1), softcap: float(0.5) }, [Q, K, V, t([2], [0, 0])]);
    const c = 0.5 * Math.tanh(2), w = Math.exp(c) / (Math.exp(c) + 1);
    expect(vals(z)[0]).toBeCloseTo(10 * w + 20 * (1 - w), 5);
  });
  it('returns zeros for a fully masked row instead of NaN', () => {
    const [y] = att({}, [Q, K, V, t([2], [0, 0], 'bool')]);
    expect(vals(y)).toEqual([0]);
  });
  it('masks causally, offset by the past length, and concatenates the cache', () => {
    // Two queries over two keys; causal lets query 0 see key 0 only.
    const q = t([1, 1, 2, 1], [1, 1]), k = t([1, 1, 2, 1], [0, 0]), v = t([1, 1, 2, 1], [1, 3]);
    expect(vals(att({ is_causal: int(1) }, [q, k, v])[0])).toEqual([1, 2]);
    // With one past key every query sees one more key: query 0 sees past + key 0.
    const pk = t([1, 1, 1, 1], [0]), pv = t([1, 1, 1, 1], [5]);
    const [y, presentK, presentV] = att({ is_causal: int(1) }, [q, k, v, undefined, pk, pv], 3);
    expect(vals(y)).toEqual([3, 3]);
    expect(presentK.dims).toEqual([1, 1, 3, 1]);
    expect(vals(presentV)).toEqual([5, 1, 3]);
  });
  it('shares KV heads across query-head groups and matches the 3-D form', () => {
    const q = t([1, 2, 1, 1], [1, -1]), k = t([1, 1, 2, 1], [1, 0]), v = t([1, 1, 2, 1], [0, 1]);
    const [y] = att({ scale: float(1) }, [q, k, v]);
    const s1 = 1 / (Math.E + 1), s2 = Math.E / (Math.E + 1);
    expect(vals(y)[0]).toBeCloseTo(s1, 6);
    expect(vals(y)[1]).toBeCloseTo(s2, 6);
    const [y3] = att({ scale: float(1), q_num_heads: int(2), kv_num_heads: int(1) }, [t([1, 1, 2], [1, -1]), t([1, 2, 1], [1, 0]), t([1, 2, 1], [0, 1])]);
    expect(y3.dims).toEqual([1, 1, 2]);
    expect(vals(y3)).toEqual(vals(y));
  });
  it('emits the QK output in each mode', () => {
    const mask = t([2], [0, -1]);
    const qk = (mode: number) => vals(att({ scale: float(1), softcap: float(2), qk_matmul_output_mode: int(mode) }, [Q, K, V, mask], 4)[3]);
    expect(qk(0)).toEqual([1, 0]);
    expect(qk(1)[0]).toBeCloseTo(2 * Math.tanh(0.5), 6);
    expect(qk(2)[1]).toBeCloseTo(-1, 6);
    const s = qk(3);
    expect(s[0] + s[1]).toBeCloseTo(1, 6);
  });
  it('rejects 3-D inputs without head counts and reports unsupported attributes', () => {
    expect(() => att({}, [t([1, 1, 2], [1, 1]), t([1, 1, 2], [1, 1]), t([1, 1, 2], [1, 1])])).toThrow(/attention_test.*q_num_heads/);
    expect(getOp('Attention')!.supports!(node('Attention', 3, { qk_matmul_output_mode: int(7) }), 23)).toMatch(/qk_matmul_output_mode/);
    expect(getOp('Attention')!.supports!(node('Attention', 3), 23)).toBeUndefined();
  });
  it('infers shapes for 3-D and 4-D inputs with a KV cache', () => {
    const f = (s: (string | number)[]): TensorType => ({ dtype: 'float32', shape: s });
    const n4 = node('Attention', 6, {}, 4);
    const out = getOp('Attention')!.infer(n4, [f(['b', 8, 's', 64]), f(['b', 2, 's', 64]), f(['b', 2, 's', 32]), undefined, f(['b', 2, 10, 64]), f(['b', 2, 10, 32])], ictx(6));
    expect(out.map((o) => o.shape)).toEqual([['b', 8, 's', 32], ['b', 2, 'fresh', 64], ['b', 2, 'fresh', 32], ['b', 8, 's', 'fresh']]);
    const n3 = node('Attention', 3, { q_num_heads: int(4), kv_num_heads: int(2) });
    expect(getOp('Attention')!.infer(n3, [f(['b', 's', 64]), f(['b', 7, 32]), f(['b', 7, 48])], ictx(3))[0].shape).toEqual(['b', 's', 96]);
  });
});
