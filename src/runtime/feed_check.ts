// Run-time input checks that protect device memory: the CUDA runner copies `data.byteLength` bytes into a buffer
// sized from the engine's shape, so a feed whose array type, length or shape disagrees with the engine would
// write past its buffer (or leave stale data) instead of failing. checkFeeds (cpu_executor.ts) covers names,
// dtypes and symbolic shapes for any graph; these checks are exact, for an engine whose shapes are all fixed.
import { InputError } from '../errors.js';
import { allocData, shapeStr, size } from '../ir/tensor.js';
import type { Tensor, ValueInfo } from '../ir/types.js';

/** The typed array class the IR uses for a dtype (Uint16Array for float16/bfloat16, Uint8Array for bool). */
const arrayName = (dtype: Tensor['dtype']) => (dtype === 'string' ? 'Array' : allocData(dtype, 0).constructor.name);

/** A Tensor object from the caller: its data must be the dtype's array type and hold exactly size(dims) values. */
export function checkTensorData(name: string, t: Tensor): void {
  const dimsOk = Array.isArray(t.dims) && t.dims.every((d) => Number.isSafeInteger(d) && d >= 0);
  if (!dimsOk) throw new InputError(`input '${name}' has invalid dims ${JSON.stringify(t.dims)}`, 'dims are non-negative integers');
  const want = arrayName(t.dtype);
  const got = (t.data as object | undefined)?.constructor?.name;
  if (got !== want) {
    throw new InputError(`input '${name}' is ${t.dtype} but its data is a ${got ?? typeof t.data}`,
      `${t.dtype} data is a ${want}${t.dtype === 'float16' || t.dtype === 'bfloat16' ? ' of raw bits (f32ToF16Bits)' : ''}; use makeTensor('${t.dtype}', dims, data)`);
  }
  if (t.data.length !== size(t.dims)) {
    throw new InputError(`input '${name}' has ${t.data.length} values but dims ${shapeStr(t.dims)} need ${size(t.dims)}`, 'make the data match the dims');
  }
}

/** A plain typed array for an input: same array type as the input's dtype (a Float64Array for a float32 input
 * would be copied as twice the bytes). */
export function checkArrayFor(vi: ValueInfo, arr: { constructor: { name: string } }): void {
  const want = arrayName(vi.type.dtype);
  if (arr.constructor.name !== want) {
    throw new InputError(`input '${vi.name}' is ${vi.type.dtype}, but a ${arr.constructor.name} was passed`, `pass a ${want} (or a Tensor from makeTensor)`);
  }
}

/** Exact shapes for an engine's static inputs, scalars included (checkFeeds lets rank-0 declarations through,
 * since models without shape information declare inputs that way). */
export function checkStaticShapes(inputs: readonly ValueInfo[], feeds: ReadonlyMap<string, Tensor>): void {
  for (const vi of inputs) {
    const t = feeds.get(vi.name);
    if (!t || !vi.type.shape.every((d) => typeof d === 'number')) continue;
    if (t.dims.length !== vi.type.shape.length || t.dims.some((d, i) => d !== vi.type.shape[i])) {
      throw new InputError(`engine: input '${vi.name}' has shape ${shapeStr(t.dims)}, the engine was built for ${shapeStr(vi.type.shape)}`,
        'pass data of the built shape, or build the engine (or an optimization profile) for this shape');
    }
  }
}
