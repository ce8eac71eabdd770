from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest
import torch
from monai_unets.data.dataset import one_line
from monai_unets.handlers.errors import explain
from monai_unets.networks import (
    EGEUNet,
    MissingOnnxModelError,
    OnnxModelError,
    OnnxRuntimeNetwork,
    check_input_size,
    reuse_freed_memory,
    select_runtime,
)
from monai_unets.networks.runtime import RUNTIMES


def _export(net, path, size=(64, 64), dynamic_axes=None):
    with torch.no_grad():
        torch.onnx.export(
            net,
            (torch.rand(1, 3, *size),),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["image"],
            dynamic_axes=dynamic_axes,
        )


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    pytest.importorskip("onnxruntime")
    net = EGEUNet(2, 3, 1).eval()
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    _export(net, path, dynamic_axes={"image": {0: "batch"}})
    return net, path


def test_onnx_network_matches_eager_at_another_batch_size(exported):
    net, path = exported
    onnx_net = OnnxRuntimeNetwork(path, num_threads=1)
    # another batch; a traced export keeps the feature sizes of its example, so the image size stays
    x = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        expected = net(x)
    got = onnx_net(x)
    assert isinstance(got, torch.Tensor) and got.shape == expected.shape
    assert (got - expected).abs().max() <= 1e-4 * max(1.0, expected.abs().max().item())


@pytest.mark.parametrize("exported_batch", [1, 2])
def test_an_export_for_a_fixed_batch_runs_any_batch_in_chunks_of_it(exported_batch, tmp_path):
    # a batch-2 export had refused every single image, so that a bundle (batch 1) failed every case
    pytest.importorskip("onnxruntime")
    net = EGEUNet(2, 3, 1).eval()
    path = tmp_path / "model.onnx"
    with torch.no_grad():
        torch.onnx.export(net, (torch.rand(exported_batch, 3, 64, 64),), str(path), dynamo=False, opset_version=17)
    onnx_net = OnnxRuntimeNetwork(path, num_threads=1)
    assert onnx_net.input_shape == [exported_batch, 3, 64, 64]
    assert onnx_net.input_size_problem([64, 64]) is None
    for batch in (1, 3):
        x = torch.rand(batch, 3, 64, 64)
        with torch.no_grad():
            expected = net(x)
        got = onnx_net(x)
        assert got.shape == expected.shape
        assert (got - expected).abs().max() <= 1e-4 * max(1.0, expected.abs().max().item())
    with pytest.raises(
        ValueError, match=rf"exported for inputs of shape \[{exported_batch}, 3, 64, 64\], got \[3, 3, 64, 80\]"
    ):
        onnx_net(torch.rand(3, 3, 64, 80))


def test_an_input_the_export_does_not_take_is_named_with_the_shape_it_takes(exported):
    _, path = exported
    onnx_net = OnnxRuntimeNetwork(path, num_threads=1)
    assert onnx_net.input_shape == [None, 3, 64, 64]
    for shape in ((1, 3, 80, 64), (1, 1, 64, 64), (3, 64, 64)):
        with pytest.raises(ValueError, match=r"exported for inputs of shape \[any, 3, 64, 64\], got \["):
            onnx_net(torch.rand(shape))


def test_the_export_states_the_image_sizes_it_takes(exported):
    _, path = exported
    onnx_net = OnnxRuntimeNetwork(path, num_threads=1)
    assert onnx_net.input_size_problem([64, 64]) is None
    assert "exported for inputs of shape [any, 3, 64, 64], got [1, 3, 80, 64]" in onnx_net.input_size_problem([80, 64])
    with pytest.raises(ValueError, match=r"image_size \[80, 64\] does not fit the network OnnxRuntimeNetwork"):
        check_input_size(onnx_net, 3, [80, 64], "image_size")


def test_an_export_with_free_spatial_axes_refuses_sizes_its_graph_does_not_hold_for(tmp_path):
    # traced at an even size, EGE-UNet's first stage is exported in a form that holds for even sizes only: an
    # odd size must fail in words, not give outputs normalised over the wrong positions
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    net = EGEUNet(2, 3, 1).eval()
    path = tmp_path / "model.onnx"
    _export(net, path, dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"}})
    onnx_net = OnnxRuntimeNetwork(path, num_threads=1)
    assert onnx_net.input_shape == [None, 3, None, None]
    for size in ((64, 64), (96, 48)):
        x = torch.rand(2, 3, *size)
        with torch.no_grad():
            expected = net(x)
        assert (onnx_net(x) - expected).abs().max() <= 1e-4 * expected.abs().max()
    for size in ((65, 64), (64, 33), (35, 35)):
        refused = r"model.onnx: ONNX Runtime cannot run this model on an input of shape"
        with pytest.raises(ValueError, match=refused) as e:
            onnx_net(torch.rand(1, 3, *size))
        # ONNX Runtime's reason whole, in one line: its first 200 characters had ended inside the name of the
        # source file, before the reason ("The input tensor cannot be reshaped to the requested shape. ...")
        assert f"({one_line(str(e.value.__cause__))}); export it again" in str(e.value)


def test_select_runtime(exported):
    net, path = exported
    assert select_runtime("torch", net, path) is net
    assert isinstance(select_runtime("onnx", net, path), OnnxRuntimeNetwork)
    with pytest.raises(ValueError, match="runtime must be one of torch, onnx, compile; got 'onxx'"):
        select_runtime("onxx", net, path)
    assert RUNTIMES == ("torch", "onnx", "compile")


def test_compile_runtime_keeps_the_module_and_its_state_dict_keys():
    # compiled in place: the bundle's weights loader fills the same parameters under the same names
    net = EGEUNet(2, 3, 1)
    keys = list(net.state_dict())
    compiled = select_runtime("compile", net, "unused.onnx")
    assert compiled is net
    assert list(compiled.state_dict()) == keys
    assert compiled._compiled_call_impl is not None  # calls go through torch.compile from now on


@pytest.mark.parametrize("device, mode", [("cpu", None), ("cuda:0", "reduce-overhead")])
def test_compile_runtime_uses_cuda_graphs_on_a_gpu(device, mode):
    class Recorder(torch.nn.Module):
        def to(self, *args, **kwargs):  # no GPU needed to see what would be asked of it
            return self

        def compile(self, **kwargs):
            self.compiled_with = kwargs

    net = select_runtime("compile", Recorder(), "unused.onnx", device)
    assert net.compiled_with == {"mode": mode}


@pytest.mark.slow
def test_compiled_network_matches_eager():
    torch.manual_seed(0)
    net = EGEUNet(2, 3, 1).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        expected = net(x)
        got = select_runtime("compile", net, "unused.onnx")(x)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_missing_or_corrupt_model_names_the_file(tmp_path):
    pytest.importorskip("onnxruntime")
    with pytest.raises(FileNotFoundError, match="model.onnx: no ONNX model there"):
        OnnxRuntimeNetwork(tmp_path / "model.onnx")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"not an onnx file")
    with pytest.raises(ValueError, match="corrupt.onnx: not a model ONNX Runtime can load"):
        OnnxRuntimeNetwork(corrupt)


def test_a_run_stopped_by_an_unusable_export_says_it_in_our_words(tmp_path):
    # a run's one-line error had given ONNX Runtime's InvalidProtobuf instead of the message that names the file,
    # and a missing export the hint to check dataset_dir and input_dir
    from monai_unets.handlers import explain

    pytest.importorskip("onnxruntime")
    (tmp_path / "corrupt.onnx").write_bytes(b"not an onnx file")
    for path, said in (("corrupt.onnx", "not a model ONNX Runtime can load"), ("model.onnx", "no ONNX model there")):
        try:
            OnnxRuntimeNetwork(tmp_path / path)
        except (OnnxModelError, MissingOnnxModelError) as error:
            wrapped = RuntimeError("Failed to evaluate ConfigExpression")  # as MONAI's config parser wraps it
            wrapped.__cause__ = error
            line = explain(wrapped)
        assert line.startswith(f"{tmp_path / path}: {said}") and "check the path" not in line, line


def test_missing_onnxruntime_is_a_clear_error(monkeypatch, tmp_path):
    import builtins

    real_import = builtins.__import__

    def no_onnxruntime(name, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError("No module named 'onnxruntime'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnxruntime)
    with pytest.raises(ImportError, match=r"pip install 'monai-unets\[onnx\]'") as raised:
        OnnxRuntimeNetwork(tmp_path / "model.onnx")
    # a bundle's last line, under MONAI's config wrapper, is this message: the import's own had been given, with a
    # hint that `pip install monai-unets` brings it, which the optional extra's package it does not
    wrapper = RuntimeError("Failed to evaluate ConfigExpression")
    wrapper.__cause__ = raised.value
    said = explain(wrapper)
    assert "pip install 'monai-unets[onnx]'" in said and "brings every" not in said, said


_REUSE_PROBE = """
import resource, sys, torch
from monai_unets.networks import reuse_freed_memory
applied = reuse_freed_memory() if sys.argv[1] == "reuse" else False
faults = []
for _ in range(20):  # a step that makes and frees a 64 MiB feature map, as a sliding window's windows do
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(64 * 2**18).sum()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(applied, sum(faults[-5:]))
"""


@pytest.mark.slow
@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's allocator only")
def test_freed_blocks_are_reused_instead_of_faulted_in_again():
    def page_faults(mode: str) -> tuple[str, int]:
        # a fresh process each: the setting is process-wide
        env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
        output = subprocess.run(
            [sys.executable, "-c", _REUSE_PROBE, mode], capture_output=True, text=True, check=True, env=env
        ).stdout.split()
        return output[0], int(output[1])

    applied, reused = page_faults("reuse")
    _, default = page_faults("default")
    assert applied == "True"
    # glibc's default maps each 64 MiB block anew: its 16,384 pages fault in again, step after step
    assert default > 5 * 10_000 and reused < 1_000, (default, reused)


@pytest.mark.parametrize(
    "variable, value",
    [
        ("MALLOC_ARENA_MAX", "2"),
        ("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=0"),
        ("LD_PRELOAD", "libjemalloc.so.2"),
    ],
)
def test_the_users_own_allocator_settings_are_left_alone(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    assert reuse_freed_memory() is False


_FREEZE_PROBE = """
import gc, weakref
import monai
from monai_unets.networks import freeze_startup_objects


class Node:
    pass


def cycle():
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


before = cycle()  # garbage already when the run starts
first, second = freeze_startup_objects(), freeze_startup_objects()
after = cycle()  # garbage made during the run
gc.collect()
print(first, second, gc.get_freeze_count() > 100_000, before() is None, after() is None)
"""


def test_startup_objects_are_frozen_once_and_garbage_is_still_collected():
    # a fresh process: freezing is process-wide, and would hold this test session's objects
    output = subprocess.run([sys.executable, "-c", _FREEZE_PROBE], capture_output=True, text=True, check=True)
    assert output.stdout.split() == ["True", "False", "True", "True", "True"], output.stdout
