"""Every bundle served by a real MONAI Label server on 127.0.0.1: /info, /infer and /train.

MONAI Label pins its own dependencies (pydicom<3, ...) and pulls its own torch, so it gets its own virtual
environment, made here once (reused from ``MONAI_UNETS_MONAILABEL_ENV`` when set and already built): the
registry's build of the test environment's torch version (several GB with its CUDA libraries), MONAI Label and
this package. Run with ``python -m pytest -m monailabel``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai_unets.bundles import bundle_dir
from monai_unets.data import load_plan, plan_file_of, save_plan
from monai_unets.scripts.demo_ct import generate_demo_ct
from monai_unets.scripts.demo_data import generate_demo_dataset
from PIL import Image

from tests.conftest import REPO_ROOT
from tests.distributed import free_port

pytestmark = pytest.mark.monailabel

MONAILABEL_REQUIREMENTS = ["monailabel==0.8.5", "pydicom<3", "pynetdicom<3", "dicomweb-client<0.60"]
SERVER_START_SECONDS = 300
REQUEST_SECONDS = 600


def _environ(env: Path) -> dict[str, str]:
    """Process environment of MONAI Label's virtual environment: its ``monailabel`` launcher runs ``python``."""
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    environ["PATH"] = f"{env / 'bin'}{os.pathsep}{environ.get('PATH', '')}"
    environ["VIRTUAL_ENV"] = str(env)
    return environ


def _run(command: list[str], **kwargs) -> None:
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{' '.join(command)}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


@pytest.fixture(scope="module")
def monailabel_env(tmp_path_factory) -> Path:
    env = Path(os.environ.get("MONAI_UNETS_MONAILABEL_ENV", tmp_path_factory.mktemp("monailabel") / "env"))
    python = env / "bin" / "python"
    if not (env / "bin" / "monailabel").exists():
        _run([sys.executable, "-m", "venv", str(env)])
        torch_version = torch.__version__.split("+")[0]
        packages = [
            f"torch=={torch_version}",
            f"torchvision=={_torchvision_for(torch_version)}",
            *MONAILABEL_REQUIREMENTS,
        ]
        # MONAI Label imports torchvision, whose registry build only loads with the registry's torch build: ignore
        # any local pip configuration (such as a folder of CPU-only torch wheels) that would pair it with another
        _run([str(python), "-m", "pip", "install", "--isolated", "-q", *packages, str(REPO_ROOT)], timeout=3600)
    else:
        # an environment built by an earlier run holds that run's copy of this package: serve the code under test
        _run(
            [str(python), "-m", "pip", "install", "--isolated", "-q", "--no-deps", "--force-reinstall", str(REPO_ROOT)],
            timeout=600,
        )
    return env


def _torchvision_for(torch_version: str) -> str:
    # torchvision 0.(minor + 15) is built for torch 2.minor
    major, minor = (int(v) for v in torch_version.split(".")[:2])
    assert major == 2, torch_version
    return f"0.{minor + 15}.*"


def _request(
    url: str, method: str = "GET", body: dict | None = None, form: dict | None = None, timeout: float = REQUEST_SECONDS
) -> tuple[int, bytes]:
    if form is not None:
        data, content_type = urllib.parse.urlencode(form).encode(), "application/x-www-form-urlencoded"
    else:
        data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
        content_type = "application/json"
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status, response.read()


def _with_weights(name: str, app_models: Path) -> Path:
    """A copy of the bundle in the app's model folder, with (random) weights: MONAI Label skips bundles without."""
    bundle = Path(shutil.copytree(bundle_dir(name), app_models / name))
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.yaml"))
    (bundle / "models").mkdir()
    torch.save(parser.get_parsed_content("network_def").state_dict(), bundle / "models" / "model.pt")
    return bundle


class Server:
    """A MONAI Label server with MONAI's bundle app serving ``models`` on ``studies``."""

    def __init__(self, env: Path, app: Path, studies: Path, models: list[str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [str(env / "bin" / "monailabel"), "start_server", "--app", str(app), "--studies", str(studies)]
        command += ["--host", "127.0.0.1", "--port", str(self.port), "--conf", "models", ",".join(models)]
        # offline: local bundles only, no model-zoo index, no SAM2 download
        command += ["--conf", "zoo_source", "github", "--conf", "sam2", "false", "--conf", "preload", "false"]
        self.log = log
        self.process = subprocess.Popen(
            command, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=_environ(env), start_new_session=True
        )
        deadline = time.time() + SERVER_START_SECONDS
        while time.time() < deadline:
            assert self.process.poll() is None, f"MONAI Label exited:\n{log.read_text()[-5000:]}"
            try:
                if _request(f"{self.url}/info/", timeout=5)[0] == 200:
                    return
            except OSError:
                time.sleep(2)
        self.stop()
        raise AssertionError(f"MONAI Label did not answer in {SERVER_START_SECONDS} s:\n{log.read_text()[-5000:]}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _serve(env: Path, root: Path, models: list[str], studies: Path) -> Iterator[dict]:
    apps = root / "apps"
    _run(
        [str(env / "bin" / "monailabel"), "apps", "--download", "--name", "monaibundle", "--output", str(apps)],
        env=_environ(env),
    )
    app = apps / "monaibundle"
    (app / "model").mkdir(exist_ok=True)
    for name in models:
        _with_weights(name, app / "model")
    server = Server(env, app, studies, models, root / "monailabel.log")
    try:
        yield {"server": server, "app": app, "studies": studies, "root": root}
    finally:
        server.stop()


@pytest.fixture(scope="module")
def served_2d(monailabel_env, tmp_path_factory):
    root = tmp_path_factory.mktemp("ml2d")
    data = root / "data"
    generate_demo_dataset(data, num_images=6, seed=5, min_size=64, max_size=96)
    studies = root / "studies"
    (studies / "labels" / "final").mkdir(parents=True)
    for image in sorted((data / "images").glob("*.jpg")):
        shutil.copy(image, studies)
        mask = np.asarray(Image.open(data / "masks" / f"{image.stem}_segmentation.png")) > 127
        # MONAI Label's label store: the image's name with the label's extension, values = label indices
        Image.fromarray(mask.astype(np.uint8)).save(studies / "labels" / "final" / f"{image.stem}.png")
    yield from _serve(monailabel_env, root, ["egeunet_skin_lesion", "unetv2_polyp"], studies)


@pytest.fixture(scope="module")
def served_3d(monailabel_env, tmp_path_factory):
    root = tmp_path_factory.mktemp("ml3d")
    data = root / "data"
    generate_demo_ct(data, num_cases=3, num_test=1, shape=(48, 40, 24), spacing=(1.2, 1.2, 2.5), dicom=True)
    studies = root / "studies"
    (studies / "labels" / "final").mkdir(parents=True)
    for image in sorted((data / "imagesTr").glob("*.nii.gz")):
        shutil.copy(image, studies)
        shutil.copy(data / "labelsTr" / image.name, studies / "labels" / "final" / image.name)
    for served in _serve(monailabel_env, root, ["attention_unet_pancreas_ct", "egeunet3d_pancreas_ct"], studies):
        yield {**served, "data": data}


def _infer(server: Server, model: str, image: str, suffix: str | None, folder: Path, **options) -> Path:
    # a lossless uint8 label file of the given suffix; without one, the file the bundle gives a request that leaves
    # them to it, as MONAI Label's clients do (for a 2D bundle a PNG)
    url = f"{server.url}/infer/{model}?image={urllib.parse.quote(image)}&output=image"
    params = {**({"result_extension": suffix, "result_dtype": "uint8"} if suffix else {}), **options}
    status, body = _request(url, "POST", form={"params": json.dumps(params)})
    assert status == 200
    result = folder / f"label{suffix or '.png'}"
    result.write_bytes(body)
    return result


def _train_rewrites_weights(served: dict, model: str) -> None:
    # a /train on other cases than the last one (another split here, as when more images are labelled) trains
    # again rather than resuming the finished last one, and one without validation cases (val_split 0, or the
    # first few labels) still writes its weights
    weights = served["app"] / "model" / model / "models" / "model.pt"
    for val_split in (0.34, 0.0, 0.34):
        before = weights.stat().st_mtime_ns
        body = {"max_epochs": 1, "val_split": val_split, "device": "cpu"}
        assert _request(f"{served['server'].url}/train/{model}?run_sync=true", "POST", body)[0] == 200
        assert weights.stat().st_mtime_ns > before, f"val_split {val_split}"
    # a background /train (a process of its own) after those trainings in the server's process: the server had kept
    # their locks, and refused it as if one of them still ran
    before = weights.stat().st_mtime_ns
    body = {"max_epochs": 1, "val_split": 0.0, "device": "cpu"}
    assert _request(f"{served['server'].url}/train/{model}", "POST", body)[0] == 200
    deadline = time.time() + 600
    while (task := json.loads(_request(f"{served['server'].url}/train/")[1]))["status"] in ("SUBMITTED", "RUNNING"):
        assert time.time() < deadline, "the background training did not end in 10 minutes"
        time.sleep(2)
    assert task["status"] == "DONE", task
    assert weights.stat().st_mtime_ns > before


@pytest.mark.parametrize("model, label", [("egeunet_skin_lesion", "lesion"), ("unetv2_polyp", "polyp")])
def test_2d_bundle_serves(served_2d, model, label, tmp_path):
    server = served_2d["server"]
    info = json.loads(_request(f"{server.url}/info/")[1])
    assert info["models"][model]["labels"] == {label: 1}
    image = sorted(served_2d["studies"].glob("*.jpg"))[0]
    # the request's defaults: a JPEG study's mask had been written as float JPEG, which failed every such request
    result = _infer(server, model, image.stem, None, tmp_path)
    with Image.open(image) as study, Image.open(result) as mask:
        assert mask.format == "PNG" and mask.mode == "L"
        assert mask.size == study.size
        assert set(np.unique(np.asarray(mask)).tolist()) <= {0, 1}
    _train_rewrites_weights(served_2d, model)


@pytest.mark.parametrize("model", ["attention_unet_pancreas_ct", "egeunet3d_pancreas_ct"])
def test_3d_bundle_serves_nifti_and_dicom(served_3d, model, tmp_path):
    server = served_3d["server"]
    info = json.loads(_request(f"{server.url}/info/")[1])
    assert info["models"][model]["labels"] == {"pancreas": 1, "tumour": 2}

    study = sorted(served_3d["studies"].glob("*.nii.gz"))[0]
    label = nib.load(_infer(server, model, study.name.split(".")[0], ".nii.gz", tmp_path))
    reference = nib.load(study)
    assert label.shape == reference.shape
    np.testing.assert_allclose(label.affine, reference.affine, atol=1e-3)
    # MONAI Label writes the result itself and drops the bundle's SaveImaged, which must stay a step of its own
    assert not list((served_3d["app"] / "model" / model).rglob("*_seg.nii.gz"))

    # a DICOM series by its folder on the server's disk; its NIfTI twin gives the expected geometry
    series = served_3d["data"] / "dicomTs" / "demo_003"
    (tmp_path / "dicom").mkdir()
    label = nib.load(_infer(server, model, str(series), ".nii.gz", tmp_path / "dicom"))
    twin = nib.load(served_3d["data"] / "imagesTs" / "demo_003.nii.gz")
    assert label.shape == twin.shape
    np.testing.assert_allclose(label.affine, twin.affine, atol=1e-3)
    # nor a DICOM SEG, which no one would receive, with the patient's identifiers, on the server
    assert not list((served_3d["app"] / "model" / model).rglob("*.dcm"))

    _train_rewrites_weights(served_3d, model)
    image = study.name.split(".")[0]
    _plan_is_read_at_each_request(served_3d, model, image, tmp_path / "replanned")
    # a cross-validation fold chosen in the model_filename option runs with its own plan
    models = served_3d["app"] / "model" / model / "models"
    shutil.copy(models / "model.pt", models / "model_fold0.pt")
    save_plan({**load_plan(models / "plan.json"), "fold": 0}, models / "plan_fold0.json")
    _plan_is_read_at_each_request(served_3d, model, image, tmp_path / "fold", "model_fold0.pt")


def _plan_is_read_at_each_request(
    served: dict, model: str, image: str, folder: Path, weights: str = "model.pt"
) -> None:
    # the plan that a /train wrote with the weights is the one the next request reads, not the one read at the server's
    # start, and it is the plan of the model file the request chose: a plan that cannot be read stops that request,
    # naming it, and the plan put back serves again
    plan_file = Path(plan_file_of(served["app"] / "model" / model / "models" / weights))
    plan = plan_file.read_text()
    folder.mkdir()
    plan_file.write_text(json.dumps({**json.loads(plan), "spacing": [1.0, 1.0]}))
    message = f"{model}/models/{plan_file.name}: 'spacing' must be 3 positive numbers, got [1.0, 1.0]"
    try:
        with pytest.raises(urllib.error.HTTPError) as error:
            _infer(served["server"], model, image, ".nii.gz", folder, model_filename=weights)
        assert error.value.code == 500
        # the server logs the error once it has answered
        deadline = time.time() + 30
        while message not in served["server"].log.read_text() and time.time() < deadline:
            time.sleep(0.5)
        assert message in served["server"].log.read_text()
    finally:
        plan_file.write_text(plan)
    _infer(served["server"], model, image, ".nii.gz", folder, model_filename=weights)
