"""Write the example MLIR programs: a GEMM as `linalg.matmul` on i8 tensors and a two-layer
quantized conv + matmul network in linalg on tensors (both built in code, `codegen.mlir_models`).

    python examples/mlir_models.py      # examples/out/gemm.mlir, examples/out/convnet.mlir
    systolab run configs/small.yaml --model examples/out/convnet.mlir --sim verilator
"""

from pathlib import Path

from systolab.codegen.mlir_models import convnet_mlir, gemm_mlir

out = Path(__file__).resolve().parent / "out"
out.mkdir(exist_ok=True)
for name, prog in {"gemm": gemm_mlir(32, 40, 24, seed=0), "convnet": convnet_mlir(seed=0)}.items():
    prog.write(out / f"{name}.mlir")
    print(f"wrote {out / name}.mlir ({prog.macs:,} MACs)")
