"""How a bundle runs its network: PyTorch, compiled PyTorch, or an exported model in ONNX Runtime behind the
``nn.Module`` interface that MONAI's inferers expect."""

from __future__ import annotations

import ctypes
import gc
import os
import platform
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data.dataset import one_line
from ..handlers.checkpoint import weights_fingerprint
from .utils import check_input_size

__all__ = [
    "EXPORT_COMMAND",
    "MissingOnnxModelError",
    "OnnxModelError",
    "RUNTIMES",
    "WEIGHTS_FINGERPRINT_KEY",
    "OnnxRuntimeNetwork",
    "freeze_startup_objects",
    "reuse_freed_memory",
    "select_runtime",
]

#: The values of a bundle's ``runtime`` key.
RUNTIMES = ("torch", "onnx", "compile")

#: The ONNX metadata entry holding the fingerprint of the weights an export was made from
#: (:func:`~monai_unets.handlers.weights_fingerprint`), written by :func:`monai_unets.bundles.export.onnx_export`.
WEIGHTS_FINGERPRINT_KEY = "monai_unets.weights_sha256"

#: The export that records that fingerprint, as the bundles' docs/README.md give it.
EXPORT_COMMAND = "python -m monai_unets.bundles.export onnx_export (docs/README.md)"
# the weights an export ships beside (models/model.onnx with models/model.pt): the only ones whose absence is an
# export given alone rather than a path given wrong
_SHIPPED_WEIGHTS = "model.pt"

# torch.compile's mode for ``runtime: compile`` per device type; torch's default elsewhere
_COMPILE_MODE = {"cuda": "reduce-overhead"}

# mallopt's parameter numbers (glibc's malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


class OnnxModelError(ValueError):
    """An ONNX model that cannot run here: unreadable, exported from other weights or for other inputs. The message
    names the file and what to do (export again, or run with runtime torch).

    Example::

        >>> OnnxRuntimeNetwork("models/model.onnx", weights="models/model.pt")  # doctest: +SKIP
        Traceback (most recent call last):
        ...
        monai_unets.networks.runtime.OnnxModelError: models/model.onnx: ...
    """


class MissingOnnxModelError(FileNotFoundError):
    """No ONNX model where a run looks for it: it has to be exported first.

    Example::

        >>> issubclass(MissingOnnxModelError, FileNotFoundError)
        True
        >>> OnnxRuntimeNetwork("no/such/model.onnx")  # doctest: +SKIP
        Traceback (most recent call last):
        ...
        monai_unets.networks.runtime.MissingOnnxModelError: no/such/model.onnx: no ONNX model there; export it first ...
    """


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as error:
        # this message, not the import's, is what a bundle's last line shows: the package is an optional extra
        raise ModuleNotFoundError(
            f"the ONNX Runtime path needs the onnxruntime package ({error}): pip install 'monai-unets[onnx]' "
            "(or onnxruntime-gpu for CUDA)",
            name="onnxruntime",
        ) from None
    return onnxruntime


class OnnxRuntimeNetwork(nn.Module):
    """An ONNX model run by ONNX Runtime, called like the PyTorch network it was exported from.

    ``forward`` takes and returns torch tensors (one input, first output), so ``SimpleInferer``,
    ``SlidingWindowInferer`` and MONAI's evaluators use it unchanged. An export for a fixed batch size takes
    batches of any size, run in chunks of the exported size. It has no parameters: weights live in
    the ONNX file. On CPU, ONNX Runtime fuses the element-wise and normalisation kernels that eager PyTorch
    runs one by one, which makes small networks such as EGE-UNet several times faster.

    Args:
        path: the ``.onnx`` file.
        device: ``cuda`` devices use ONNX Runtime's CUDA provider when installed (``onnxruntime-gpu``); anything
            else runs on CPU. Outputs come back on the input's device.
        num_threads: intra-op threads; default: ``torch.get_num_threads()``, so one setting governs both runtimes.
        weights: the weights file the model should have been exported from (the bundle's ``models/model.pt``).
            An export from other weights (``model.pt`` trained again since) is refused, one that records no weights
            (an older export, or MONAI's own ``onnx_export``) is run with a warning. A file that does not exist is
            refused, but for one in the model's own folder (an export shipped without its weights), which runs
            unchecked with a warning.

    Example::

        >>> net = OnnxRuntimeNetwork("models/model.onnx")  # doctest: +SKIP
        >>> net(torch.rand(1, 3, 256, 256)).shape  # doctest: +SKIP
        torch.Size([1, 1, 256, 256])
    """

    def __init__(
        self,
        path: str | Path,
        device: str | torch.device = "cpu",
        num_threads: int | None = None,
        weights: str | Path | None = None,
    ) -> None:
        super().__init__()
        ort = _import_onnxruntime()
        path = Path(path)
        if not path.is_file():
            raise MissingOnnxModelError(
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
            raise OnnxModelError(f"{path}: not a model ONNX Runtime can load ({error}).") from error
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise OnnxModelError(
                f"{path}: the model takes {len(inputs)} inputs; a segmentation network takes one image."
            )
        self.input_name = inputs[0].name
        # fixed sizes of the export (an int per axis; a name where the export left the axis free)
        self.input_shape = [d if isinstance(d, int) else None for d in inputs[0].shape]
        self.path = path
        if weights is not None:
            self._check_weights(Path(weights))

    def _check_weights(self, weights: Path) -> None:
        if not weights.is_file():
            if weights.absolute().parent != self.path.absolute().parent or weights.name != _SHIPPED_WEIGHTS:
                # weights named otherwise (a mistyped --model_file, in models/ too) had turned the check off
                raise FileNotFoundError(
                    f"{weights}: no weights file there, to check that {self.path} was exported from them; give "
                    "the file it was exported from."
                )
            # an export shipped without its weights (models/model.onnx alone)
            warnings.warn(
                f"{self.path}: no {weights.name} beside it, so it runs unchecked against the weights it was "
                "exported from.",
                stacklevel=3,
            )
            return
        recorded = self.session.get_modelmeta().custom_metadata_map.get(WEIGHTS_FINGERPRINT_KEY)
        if recorded is None:
            warnings.warn(
                f"{self.path}: records no weights it was exported from, so it may be older than {weights}; "
                f"export it again with {EXPORT_COMMAND} after each training.",
                stacklevel=3,
            )
        elif recorded != weights_fingerprint(weights):
            raise OnnxModelError(
                f"{self.path}: exported from other weights than {weights} (trained after the export?); export it "
                f"again with {EXPORT_COMMAND} or run with --runtime torch."
            )

    def _shape_problem(self, shape: list[int]) -> str | None:
        # the batch axis is not compared: a batch of another size runs in chunks of the export's (see forward)
        fixed = zip(self.input_shape[1:], shape[1:])
        if len(shape) == len(self.input_shape) and all(d is None or d == n for d, n in fixed):
            return None
        wanted = ", ".join("any" if d is None else str(d) for d in self.input_shape)
        return (
            f"{self.path} was exported for inputs of shape [{wanted}], got {shape}: export it again for this size "
            "(image_size) or run with runtime torch."
        )

    def input_size_problem(self, spatial_size: list[int]) -> str | None:
        """Why an image of ``spatial_size`` cannot go through the exported model, or ``None`` when it can.

        :func:`select_runtime` asks it (through :func:`~monai_unets.networks.check_input_size`) when a bundle
        makes its network, so that an ``image_size`` the export does not take stops the run before any case is read.

        Args:
            spatial_size: the input's spatial shape (no batch or channel axis).
        """
        return self._shape_problem([self.input_shape[0] or 1, self.input_shape[1] or 1, *map(int, spatial_size)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = list(x.shape)
        problem = self._shape_problem(shape)
        if problem is not None:
            raise OnnxModelError(problem)
        array = x.detach().float().cpu().numpy()
        batch = self.input_shape[0] or len(array)
        try:
            # an export for a fixed batch size runs any batch in chunks of that size, the last one filled up with
            # copies of its last image; one for batch 1 runs images one by one, on CPU also the faster way (EGE-UNet
            # at 8x3x256x256 on one thread: 1.07x a batch-8 export, whose feature maps no longer fit the L2 cache)
            outputs = []
            for start in range(0, len(array), batch):
                chunk = array[start : start + batch]
                count = len(chunk)
                if count < batch:
                    chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - count, axis=0)])
                outputs.append(self.session.run(None, {self.input_name: chunk})[0][:count])
            output = np.concatenate(outputs)
        except Exception as error:  # onnxruntime raises its own exception types
            # an export declared free spatial axes where the network's graph holds for the traced size only
            raise OnnxModelError(
                f"{self.path}: ONNX Runtime cannot run this model on an input of shape {shape} "
                f"({one_line(str(error))}); export it again for this size or run with runtime torch."
            ) from error
        return torch.from_numpy(output).to(x.device)

    def extra_repr(self) -> str:
        return f"path={str(self.path)!r}, providers={self.session.get_providers()}"


def select_runtime(
    runtime: str,
    network: nn.Module,
    onnx_path: str | Path,
    device: str | torch.device = "cpu",
    image_size: Sequence[int] | None = None,
    weights: str | Path | None = None,
) -> nn.Module:
    """The network a bundle runs: ``network`` on ``device``, as it is or compiled, or the ONNX model.

    With ``image_size``, an ONNX model exported for another size stops here, when the bundle's evaluator is made,
    before any case is read (the PyTorch network's own size rule is the bundle's ``input_size_check``).

    Args:
        runtime: ``"torch"`` (the network as it is), ``"compile"`` (the same module, compiled in place with
            ``torch.compile`` on its first call, on a CUDA device with CUDA graphs (``mode="reduce-overhead"``): a
            minute or more of compiling per input shape, then on a GPU many times eager PyTorch's throughput;
            state-dict keys unchanged, so the checkpoint loader works as before) or
            ``"onnx"`` (the exported model in ONNX Runtime).
        network: the PyTorch network (its weights are loaded later by the bundle's checkpoint loader).
        onnx_path: the exported ONNX model, used with ``"onnx"``.
        device: where the network runs.
        image_size: the spatial size every image is resized to (the bundle's ``image_size``), checked against
            the ONNX model's input.
        weights: the weights file of ``network`` (``models/model.pt``): an ONNX model exported from other weights
            stops here too (see :class:`OnnxRuntimeNetwork`).

    Example::

        >>> from monai_unets import EGEUNet
        >>> net = select_runtime("torch", EGEUNet(spatial_dims=2, in_channels=3, out_channels=1), "model.onnx")
        >>> type(net).__name__, next(net.parameters()).device
        ('EGEUNet', device(type='cpu'))
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
        # an unusable device stops here, as PyTorch's network.to(device) stops runtime torch, not each case
        torch.empty(0, device=device)
        model = OnnxRuntimeNetwork(onnx_path, device, weights=weights)
        if image_size is not None:
            check_input_size(model, model.input_shape[1] or 1, image_size, "image_size")
        if (model.input_shape[0] or 1) > 1:
            warnings.warn(
                f"{onnx_path} was exported for batch {model.input_shape[0]}: a bundle runs one image at a time, each "
                f"then filled up to a batch of {model.input_shape[0]} (as many times the work); export it for batch 1.",
                stacklevel=2,
            )
        return model
    raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}; got {runtime!r}.")


def reuse_freed_memory(block_mib: int = 256, keep_mib: int = 1024) -> bool:
    """Keep freed memory blocks in the process for the next allocation instead of returning them (glibc only).

    glibc's allocator gives every block above 32 MiB (and, until its threshold has adapted, above 128 KiB) its own
    memory mapping and unmaps it when freed, and gives the free top of its heap back to the system, so that the
    next window of a sliding window, or the next training step, faults fresh pages in again: on a 2-core CPU, 4
    million page faults took half of a 3D EGE-UNet's sliding window over a CT (docs/performance.md, "Speed on
    CPU"). Raising glibc's mmap and trim thresholds keeps those blocks for reuse, as the caching allocators that
    PyTorch's CPU tuning guides suggest (jemalloc, tcmalloc) do. The price is a process that keeps more of its
    peak heap: 8-21% more peak resident memory in the CT bundles' runs.

    Nothing changes with another C library, or where the user set the allocator already (``MALLOC_*``
    variables, ``glibc.malloc`` tunables, or a jemalloc, tcmalloc or mimalloc in ``LD_PRELOAD``). Processes
    forked afterwards (DataLoader workers) inherit the setting.

    Args:
        block_mib: blocks up to this size come from the heap; larger ones (whole-volume arrays) are still mapped
            on their own and go back to the system when freed.
        keep_mib: free memory kept at the top of the heap (a smaller value gave back pages that the next window
            faulted in again: 1.2 million faults at 256 MiB, a few thousand at 1,024).

    Returns:
        whether the setting was made.

    Example::

        >>> reuse_freed_memory()  # doctest: +SKIP
        True
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    # the user's own allocator settings win: glibc's variables, its malloc tunables, a preloaded jemalloc/tcmalloc
    if any(name.startswith("MALLOC_") for name in os.environ) or "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    if "malloc" in os.environ.get("LD_PRELOAD", ""):
        return False
    libc = ctypes.CDLL(None)
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, block_mib * 2**20)) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, keep_mib * 2**20)
    )


def freeze_startup_objects() -> bool:
    """Leave the objects alive at a run's start out of the garbage collector's later collections (``gc.freeze``).

    Importing PyTorch, MONAI and their dependencies makes millions of objects (over 4,000 modules) that live as long
    as the process, and every full collection walks all of them: with Python's own collections at exit, a CT
    bundle's process took 1.7-1.8 s to end after its work, 0.6-0.7 s with them frozen (2-core CPU). DataLoader
    workers forked afterwards also leave those objects alone in their own collections, so they copy fewer of the
    parent's pages (the use Python's documentation gives ``gc.freeze``). Garbage that already exists is collected
    first, so none of it is kept; objects made later are collected as usual. Nothing is frozen where objects
    already are (an earlier call): a process that runs several workflows keeps the later ones' objects collectable.

    Returns:
        whether this call froze the objects (``False`` when objects were frozen already).

    Example::

        >>> freeze_startup_objects()  # doctest: +SKIP
        True
    """
    if gc.get_freeze_count():
        return False
    gc.collect()
    gc.freeze()
    return True
