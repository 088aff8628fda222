"""Optional ONNX Runtime backend for inference on CPU.

ONNX Runtime folds batch norm into the convolution weights and fuses the activations, which
removes most of the memory-bound element-wise passes that dominate the eager recurrent U-Net on
CPU (see docs/performance.md). The export is for one fixed input shape (prediction windows all
have the same shape) and reproduces the PyTorch logits to about 1e-7.

Needs the ``onnx`` extra (``pip install 'sarcrop[onnx]'``); ONNX Runtime is imported only when
a model is built, never when this module is imported.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from sarcrop.errors import SarcropError


def export_onnx(model: nn.Module, input_shape: Sequence[int]) -> bytes:
    """The ONNX graph of ``model`` in eval mode for inputs of exactly ``input_shape``."""
    parameter = next(model.parameters())
    x = torch.zeros(tuple(input_shape), dtype=parameter.dtype, device=parameter.device)
    training = model.training
    model.eval()
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about shape checks in forward
            torch.onnx.export(
                model,
                (x,),
                buffer,  # type: ignore[arg-type]  # file-like objects are accepted
                input_names=["x"],
                output_names=["logits"],
                dynamo=False,
            )
    finally:
        model.train(training)
    return buffer.getvalue()


class OnnxModel:
    """Callable like the model on ``(B, T, bands, H, W)`` float32 tensors of the exported shape."""

    def __init__(self, model: nn.Module, input_shape: Sequence[int], threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise SarcropError(
                "ONNX Runtime is not installed: pip install 'sarcrop[onnx]'"
            ) from None
        self.input_shape = tuple(int(v) for v in input_shape)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session: Any = ort.InferenceSession(
            export_onnx(model, self.input_shape), options, providers=["CPUExecutionProvider"]
        )

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape) != self.input_shape:
            raise SarcropError(
                f"the ONNX model was exported for input {self.input_shape}, got {tuple(x.shape)}"
            )
        array = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(self.session.run(None, {"x": array})[0])
