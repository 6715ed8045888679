"""Export the reference models once with a dynamic batch dim (so one ONNX file serves every batch size), plus a
batch-1 test set with PyTorch fp32 outputs. Uses .gpu/models.py's model builders (same weights and inputs)."""
import os, sys, json
sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '.gpu'))
import torch, onnx
from onnx import numpy_helper
import models

def export(name, out):
    m = models.build(name)
    x = models.example(name, 1)
    d = os.path.join(out, name)
    os.makedirs(os.path.join(d, 'test_data_set_0'), exist_ok=True)
    path = os.path.join(d, 'model.onnx')
    with torch.no_grad():
        y = m(x)
    # traced outside no_grad: under no_grad nn.MultiheadAttention (ViT) takes a fused fast path with no ONNX export
    axes = {'input': {0: 'batch'}, 'output': {0: 'batch'}}
    torch.onnx.export(m, (x,), path, opset_version=17, dynamo=False, input_names=['input'], output_names=['output'], dynamic_axes=axes)
    open(os.path.join(d, 'test_data_set_0', 'input_0.pb'), 'wb').write(numpy_helper.from_array(x.numpy(), 'input').SerializeToString())
    open(os.path.join(d, 'test_data_set_0', 'output_0.pb'), 'wb').write(numpy_helper.from_array(y.numpy(), 'output').SerializeToString())
    print(json.dumps(dict(model=name, path=path, bytes=os.path.getsize(path))), flush=True)

if __name__ == '__main__':
    for n in sys.argv[2:]: export(n, sys.argv[1])
