"""Exports small-config versions of the benchmark transformers (same code paths as .gpu/models.py: HF BertModel with
its default attention implementation, torchvision VisionTransformer; torch.onnx.export opset 17, dynamo=False) so
tests here see the real export structure without a 400 MB model. Run on the GPU machine (it has PyTorch):
    python3 bench/export-fixtures.py $OUT
writes $OUT/<name>/model.onnx and test_data_set_0/{input_0,output_0}.pb (PyTorch fp32 reference)."""
import os, sys, json
import torch, onnx
from onnx import numpy_helper

def bert():
    from transformers import BertConfig, BertModel
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=64, hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
                     max_position_embeddings=32)
    m = BertModel(cfg, add_pooling_layer=False)
    class Wrap(torch.nn.Module):
        def __init__(s, m): super().__init__(); s.m = m
        def forward(s, ids): return s.m(input_ids=ids).last_hidden_state
    return Wrap(m).eval(), torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(1)), getattr(cfg, '_attn_implementation', '?')

def vit():
    from torchvision.models.vision_transformer import VisionTransformer
    torch.manual_seed(0)
    m = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=64, mlp_dim=128, num_classes=10)
    torch.nn.init.normal_(m.heads.head.weight, std=0.1)  # torchvision zero-initialises the head: outputs would all be 0
    return m.eval(), torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)), 'torchvision'

for name, fn in [(n, {'bert_tiny': bert, 'vit_tiny': vit}[n]) for n in (sys.argv[2:] or ['bert_tiny', 'vit_tiny'])]:
    m, x, impl = fn()
    d = os.path.join(sys.argv[1], name)
    os.makedirs(os.path.join(d, 'test_data_set_0'), exist_ok=True)
    path = os.path.join(d, 'model.onnx')
    with torch.no_grad():
        y = m(x)
    axes = {'input': {0: 'batch'}, 'output': {0: 'batch'}}
    # outside no_grad: under it nn.MultiheadAttention takes its fused fast path, which has no ONNX export
    torch.onnx.export(m, (x,), path, opset_version=17, dynamo=False, input_names=['input'], output_names=['output'], dynamic_axes=axes)
    onnx.checker.check_model(path)
    open(os.path.join(d, 'test_data_set_0', 'input_0.pb'), 'wb').write(numpy_helper.from_array(x.numpy(), 'input').SerializeToString())
    open(os.path.join(d, 'test_data_set_0', 'output_0.pb'), 'wb').write(numpy_helper.from_array(y.numpy(), 'output').SerializeToString())
    ops = {}
    for n in onnx.load(path).graph.node: ops[n.op_type] = ops.get(n.op_type, 0) + 1
    print(json.dumps(dict(model=name, impl=impl, bytes=os.path.getsize(path), torch=torch.__version__, ops=ops)), flush=True)
