"""Generate a small ResNet-style model, quantize it with ONNX Runtime, and write an input for it.

    python examples/tiny_resnet.py                       # writes examples/out/...
    systolab run configs/default.yaml --model examples/out/tiny_resnet.onnx \\
        --input examples/out/input.npy --output examples/out/output.npy --sim func

The float model (conv 3x3/2 -> relu -> maxpool 3x3/2 -> residual block of two 3x3 convs ->
conv 3x3/2 -> relu -> global average pool -> fully connected) is built in code with random
weights, quantized by `onnxruntime.quantization.quantize_static` over generated calibration data
(QDQ format by default; `--format qoperator` gives QLinearConv & co). Nothing is downloaded.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx

from systolab.codegen.onnx_models import calibration_inputs, quantize, tiny_resnet


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(Path(__file__).parent / "out"), help="output directory (default examples/out)")
    p.add_argument("--format", choices=("qdq", "qoperator"), default="qdq", help="quantized model format")
    p.add_argument("--size", type=int, default=32, help="input height and width (default 32)")
    p.add_argument("--channels", type=int, nargs=2, default=(16, 32), metavar=("C1", "C2"),
                   help="channels of the stem/residual block and of the last conv (default 16 32)")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--seed", type=int, default=0, help="weights and data (default 0)")
    args = p.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = tiny_resnet(channels=tuple(args.channels), size=args.size, classes=args.classes, seed=args.seed)
    onnx.save(model, out / "tiny_resnet_float.onnx")
    calibration = calibration_inputs(model, 16, seed=args.seed + 1)
    path = quantize(model, out / "tiny_resnet.onnx", calibration, fmt=args.format)
    x = calibration_inputs(model, 1, seed=args.seed + 1000)[0]["x"]
    np.save(out / "input.npy", x)
    print(f"wrote {out / 'tiny_resnet_float.onnx'} (float), {path} ({args.format}), {out / 'input.npy'} {list(x.shape)}")
    print(f"run it:  systolab run configs/default.yaml --model {path} --input {out / 'input.npy'} "
          f"--output {out / 'output.npy'} --sim func")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
