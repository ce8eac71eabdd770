"""How a bundle runs its network: PyTorch, compiled PyTorch, or an exported model in ONNX Runtime behind the
``nn.Module`` interface that MONAI's inferers expect."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

__all__ = ["RUNTIMES", "OnnxRuntimeNetwork", "select_runtime"]

#: The values of a bundle's ``runtime`` key.
RUNTIMES = ("torch", "onnx", "compile")

# torch.compile's mode for ``runtime: compile`` per device type; torch's default elsewhere
_COMPILE_MODE = {"cuda": "reduce-overhead"}


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as error:
        raise ImportError(
            "the ONNX Runtime path needs the onnxruntime package: pip install 'monai-unets[onnx]' "
            "(or onnxruntime-gpu for CUDA)"
        ) from error
    return onnxruntime


class OnnxRuntimeNetwork(nn.Module):
    """An ONNX model run by ONNX Runtime, called like the PyTorch network it was exported from.

    ``forward`` takes and returns torch tensors (one input, first output), so ``SimpleInferer``,
    ``SlidingWindowInferer`` and MONAI's evaluators use it unchanged. It has no parameters: weights live in
    the ONNX file. On CPU, ONNX Runtime fuses the element-wise and normalisation kernels that eager PyTorch
    runs one by one, which makes small networks such as EGE-UNet several times faster.

    Args:
        path: the ``.onnx`` file.
        device: ``cuda`` devices use ONNX Runtime's CUDA provider when installed (``onnxruntime-gpu``); anything
            else runs on CPU. Outputs come back on the input's device.
        num_threads: intra-op threads; default: ``torch.get_num_threads()``, so one setting governs both runtimes.

    Example::

        >>> net = OnnxRuntimeNetwork("models/model.onnx")  # doctest: +SKIP
        >>> net(torch.rand(1, 3, 256, 256)).shape  # doctest: +SKIP
        torch.Size([1, 1, 256, 256])
    """

    def __init__(self, path: str | Path, device: str | torch.device = "cpu", num_threads: int | None = None) -> None:
        super().__init__()
        ort = _import_onnxruntime()
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: no ONNX model there; export it first (see the bundle's docs/README.md, onnx_export)."
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads or torch.get_num_threads()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = ["CPUExecutionProvider"]
        if torch.device(device).type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as error:  # onnxruntime raises its own exception types for corrupt or unsupported files
            raise ValueError(f"{path}: not a model ONNX Runtime can load ({error}).") from error
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ValueError(f"{path}: the model takes {len(inputs)} inputs; a segmentation network takes one image.")
        self.input_name = inputs[0].name
        # fixed sizes of the export (an int per axis; a name where the export left the axis free)
        self.input_shape = [d if isinstance(d, int) else None for d in inputs[0].shape]
        self.path = path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = list(x.shape)
        # an export for batch 1 runs a larger batch image by image: on CPU that is also the faster way (EGE-UNet
        # at 8x3x256x256 on one thread: 1.07x a batch-8 export, whose feature maps no longer fit the L2 cache)
        per_image = len(shape) == len(self.input_shape) and self.input_shape[0] == 1 and shape[0] > 1
        first = 1 if per_image else 0  # the batch axis is not compared when images go one by one
        fixed = zip(self.input_shape[first:], shape[first:])
        if len(shape) != len(self.input_shape) or any(d is not None and d != n for d, n in fixed):
            wanted = ", ".join("any" if d is None else str(d) for d in self.input_shape)
            raise ValueError(
                f"{self.path} was exported for inputs of shape [{wanted}], got {shape}: export it again for this size "
                "(image_size, batch size) or run with runtime torch."
            )
        array = x.detach().float().cpu().numpy()
        if per_image:
            images = [self.session.run(None, {self.input_name: array[i : i + 1]})[0] for i in range(len(array))]
            output = np.concatenate(images)
        else:
            (output, *_) = self.session.run(None, {self.input_name: array})
        return torch.from_numpy(output).to(x.device)

    def extra_repr(self) -> str:
        return f"path={str(self.path)!r}, providers={self.session.get_providers()}"


def select_runtime(
    runtime: str, network: nn.Module, onnx_path: str | Path, device: str | torch.device = "cpu"
) -> nn.Module:
    """The network a bundle runs: ``network`` on ``device``, as it is or compiled, or the ONNX model.

    Args:
        runtime: ``"torch"`` (the network as it is), ``"compile"`` (the same module, compiled in place with
            ``torch.compile`` on its first call, on a CUDA device with CUDA graphs (``mode="reduce-overhead"``): a
            minute or more of compiling per input shape, then on a GPU many times eager PyTorch's throughput;
            state-dict keys unchanged, so the checkpoint loader works as before) or
            ``"onnx"`` (the exported model in ONNX Runtime).
        network: the PyTorch network (its weights are loaded later by the bundle's checkpoint loader).
        onnx_path: the exported ONNX model, used with ``"onnx"``.
        device: where the network runs.

    Example::

        >>> net = select_runtime("torch", EGEUNet(), "models/model.onnx")
    """
    if runtime == "torch":
        return network.to(device)
    if runtime == "compile":
        network = network.to(device)
        # on a GPU with CUDA graphs, which replay each batch size's kernels in one launch: an H200 ran EGE-UNet at
        # batch 1 in 0.9 ms against 10 ms compiled without them (float16 autocast)
        network.compile(mode=_COMPILE_MODE.get(torch.device(device).type))
        return network
    if runtime == "onnx":
        return OnnxRuntimeNetwork(onnx_path, device)
    raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}; got {runtime!r}.")
