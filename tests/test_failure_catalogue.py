"""The failure catalogue: every bad input and fault tried, and what the user sees; each row is a test.

Each :class:`Fault` makes one bad input or fault in a fresh folder, runs the code a bundle or tool runs on it (the
bundle's own config components: ``load_transforms``, ``settings``, the inference / evaluation preprocessing, the
checkpoint handlers) and returns what the user is shown. The test asserts the row's ``expect`` fragment in it.
``docs/failure-catalogue.md`` is generated from this table (``python tests/test_failure_catalogue.py``) and a
test checks that it is current. A new kind of fault is one more row.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events
from monai.bundle import ConfigParser
from monai.inferers import SimpleInferer
from monai_unets.bundles import bundle_dir
from monai_unets.data import (
    DEFAULT_PLAN,
    atomic_open,
    border_filling_labels,
    list_cases,
    load_datalist,
    save_plan,
    scan_cases,
)
from monai_unets.data.medical_io import list_medical_cases
from monai_unets.handlers import BestModelSaver, TrainingCheckpoint, load_weights, weights_fingerprint
from monai_unets.handlers.errors import check_settings, explain
from monai_unets.networks import EnsembleInferer, OnnxRuntimeNetwork, PVTv2Encoder
from monai_unets.networks.runtime import WEIGHTS_FINGERPRINT_KEY
from monai_unets.scripts import cli
from PIL import Image

from tests.conftest import processed_cases

REPO_ROOT = Path(__file__).resolve().parents[1]
DOC = REPO_ROOT / "docs" / "failure-catalogue.md"
CT = "attention_unet_pancreas_ct"
SKIN = "egeunet_skin_lesion"


@dataclass(frozen=True)
class Fault:
    """One bad input or fault: where it happens, what it is, what the user sees."""

    area: str  # training, inference, evaluation, data tools (check-data), all bundles
    fault: str
    trigger: Callable[[Path], str]  # makes the fault under a folder and returns what the user is shown
    expect: str  # fragment of what the user is shown
    outcome: str  # what happens to the run


# ---------------------------------------------------------------------------------------------------- helpers


@lru_cache(maxsize=None)
def _parser(bundle: str, configs: tuple[str, ...] = ("train.yaml",), overrides: tuple = ()) -> ConfigParser:
    parser = ConfigParser()
    folder = bundle_dir(bundle) / "configs"
    parser.read_config([str(folder / c) for c in configs])
    parser["bundle_root"] = str(bundle_dir(bundle))
    for key, value in overrides:
        parser[key] = json.loads(value)
    return parser


def _component(bundle: str, id: str, configs: tuple[str, ...] = ("train.yaml",), **overrides):
    frozen = tuple(sorted((key, json.dumps(value)) for key, value in overrides.items()))
    return _parser(bundle, configs, frozen).get_parsed_content(id)


def _nifti(path: Path, array: np.ndarray, affine: np.ndarray | None = None) -> str:
    nib.save(nib.Nifti1Image(np.asarray(array), np.eye(4) if affine is None else affine), str(path))
    return str(path)


def _nifti_bytes(root: Path, array: np.ndarray) -> bytes:
    return Path(_nifti(root / "made.nii.gz", array)).read_bytes()


def _volume(shape=(16, 16, 8)) -> np.ndarray:
    return np.random.default_rng(0).normal(40, 20, shape).astype(np.float32)


def _labels(shape=(16, 16, 8), values=(0, 1, 2)) -> np.ndarray:
    label = np.zeros(shape, dtype=np.uint8)
    for i, v in enumerate(values):
        label[i * 3 : i * 3 + 3] = v
    return label


def _png(path: Path, array: np.ndarray) -> str:
    Image.fromarray(array).save(path)
    return str(path)


def _rgb(size=(24, 32)) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (*size, 3), dtype=np.uint8)


def _frames(path: Path, count: int = 2) -> str:
    """An animation (GIF, PNG, WebP) or a stack of TIFF pages of ``count`` RGB images."""
    first, *rest = (Image.fromarray(_rgb() // (k + 1)) for k in range(count))
    first.save(path, save_all=True, append_images=rest)
    return str(path)


def _mask(size=(24, 32)) -> np.ndarray:
    mask = np.zeros(size, dtype=np.uint8)
    mask[5:15, 5:15] = 255
    return mask


def _check(bundle: str, case: dict, **overrides) -> str:
    """What the pre-flight check of training (and check-data) reports for one case."""
    bad = scan_cases([case], _component(bundle, "load_transforms", **overrides)).bad
    return str(bad[0][1]) if bad else "accepted"


def _border_filling(root: Path, mask: np.ndarray) -> str:
    """The warning of the pre-flight check of training (and check-data) about one case of this 2D mask."""
    groups = [[{"image": _png(root / "img.png", _rgb()), "label": _png(root / "mask.png", mask)}]]
    scan = scan_cases(groups[0], _component(SKIN, "load_transforms"))
    return border_filling_labels(groups, scan) or "no warning"


def _ct_case(root: Path, image=None, label=None, image_affine=None, label_affine=None, **overrides) -> str:
    image_path = _nifti(root / "img.nii.gz", _volume() if image is None else image, image_affine)
    label_path = _nifti(root / "lab.nii.gz", _labels() if label is None else label, label_affine)
    return _check(CT, {"image": image_path, "label": label_path}, **overrides)


#: a VOC-style palette: background black, then the display colours of classes 1 and 2
_VOC = [(0, 0, 0), (128, 0, 0), (0, 128, 0)]


def _skin_case(root: Path, image=None, mask=None) -> str:
    image_path = _png(root / "img.png", _rgb() if image is None else image)
    mask_path = _png(root / "mask.png", _mask() if mask is None else mask)
    return _check(SKIN, {"image": image_path, "label": mask_path})


def _mask_of_a_turned_photograph(root: Path, orientation: int = 6) -> str:
    """A phone photograph stored turned (EXIF ``orientation``: 6 sideways, 3 upside down) with its mask drawn on it
    as a viewer shows it."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(_rgb()).save(root / "phone.jpg", exif=exif)
    mask = _png(root / "mask.png", _mask((32, 24) if orientation >= 5 else (24, 32)))
    with pytest.warns(UserWarning, match=f"EXIF orientation {orientation} is not applied"):
        return _check(SKIN, {"image": str(root / "phone.jpg"), "label": mask})


def _palette_png(path: Path, indices: np.ndarray, colours: list[tuple[int, int, int]]) -> str:
    """A palette PNG of ``indices`` whose palette shows index ``i`` as ``colours[i]``."""
    image = Image.fromarray(indices.astype(np.uint8))
    image.putpalette([sample for colour in colours for sample in colour])
    image.save(path)
    return str(path)


def _jpeg(path: Path, array: np.ndarray) -> str:
    Image.fromarray(array).save(path, quality=90)
    return str(path)


def _jpeg_bytes() -> bytes:
    """An RGB photograph-sized JPEG's bytes: noise, so that half of the file cuts into its pixel data."""
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def _filled_tiff_bytes() -> bytes:
    """A float TIFF whose missing pixels hold +-3e38, as GIS and microscopy tools fill them."""
    image = np.tile(np.linspace(0.0, 1.0, 32, dtype=np.float32), (24, 1))
    image[0, :2] = 3e38, -3e38
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "TIFF")
    return buffer.getvalue()


def _listing_warning(root: Path) -> str:
    """The warning of listing an inference folder whose subfolder links back to it."""
    (root / "a.nii.gz").touch()
    (root / "loop").symlink_to(".")
    with pytest.warns(UserWarning) as warned:
        cases = list_medical_cases(root)
    assert cases == [{"image": str(root / "a.nii.gz")}]
    return str(warned[0].message)


def _empty_folders_warning(root: Path) -> str:
    """The warning of listing an inference folder that holds an empty folder and a Mac archive's __MACOSX/."""
    (root / "a.nii.gz").touch()
    (root / "empty").mkdir()
    (root / "__MACOSX").mkdir()
    (root / "__MACOSX" / "._a.nii.gz").write_bytes(b"\x00\x05\x16\x07")
    with pytest.warns(UserWarning) as warned:
        cases = list_medical_cases(root)
    assert cases == [{"image": str(root / "a.nii.gz")}]
    return str(warned[0].message)


def _raised(call: Callable[[], object]) -> str:
    try:
        call()
    except Exception as error:  # noqa: BLE001 - the message is what the row is about
        return explain(error)
    return "no error"


def _datalist(root: Path, text: str) -> str:
    path = root / "dataset.json"
    path.write_text(text)
    return _raised(lambda: load_datalist(path, "training", root))


def _empty_test_list(root: Path) -> str:
    (root / "datalist.json").write_text('{"training": [], "test": []}')
    return _raised(lambda: list_cases(root, key="test"))


def _ignore_label(root: Path) -> str:
    """An nnU-Net raw dataset whose label table has nnU-Net's ``ignore`` label (sparse annotation)."""
    labels = {"background": 0, "pancreas": 1, "ignore": 2}
    dataset = {"channel_names": {"0": "CT"}, "labels": labels, "file_ending": ".gz"}
    (root / "dataset.json").write_text(json.dumps(dataset))
    return _raised(lambda: load_datalist(root / "dataset.json", "training"))


def _mr_without_plan(root: Path) -> str:
    """A CT bundle's plan for an MR dataset.json of other labels, without `monai-unets plan`."""
    labels = {"0": "background", "1": "CSF"}
    (root / "dataset.json").write_text(json.dumps({"modality": {"0": "MR"}, "labels": labels, "training": []}))
    return _raised(lambda: _component(CT, "plan", dataset_dir=str(root)))


def _unlabelled_test_list(root: Path) -> str:
    datalist = _garbage(root, "datalist.json", b'{"training": [], "test": [{"image": "a.png"}]}')
    configs = ("train.yaml", "evaluate.yaml")
    return _raised(lambda: _component(SKIN, "validate#dataset#data", configs, dataset_dir=str(root), datalist=datalist))


def _datalist_beside_the_dataset(root: Path) -> str:
    """A datalist whose paths are relative to its own folder, kept outside the dataset folder."""
    image = root / "data" / "images" / "a.png"
    image.parent.mkdir(parents=True)
    image.touch()
    datalist = _garbage(root, "datalist.json", b'{"training": [{"image": "data/images/a.png"}]}')
    return _raised(lambda: load_datalist(datalist, "training", root / "data"))


def _setting(bundle: str, key: str, value: object) -> str:
    return _raised(lambda: check_settings(_component(bundle, "settings", **{key: value})))


def _plain_run_line(bundle: str, *overrides: str) -> str:
    """What ``python -m monai.bundle run --config_file <bundle>/configs/inference.yaml ...`` stops with."""
    from monai_unets.bundles.overrides import check_command_line

    config = str(bundle_dir(bundle) / "configs" / "inference.yaml")
    try:
        check_command_line(["/env/monai/bundle/__main__.py", "run", "--config_file", config, *overrides])
    except SystemExit as stop:
        return str(stop)
    return "no error"


def _garbage(root: Path, name: str, content: bytes) -> str:
    path = root / name
    path.write_bytes(content)
    return str(path)


def _truncated_nifti(root: Path) -> str:
    full = _nifti(root / "full.nii.gz", _volume())
    data = Path(full).read_bytes()
    return _garbage(root, "cut.nii.gz", data[: len(data) // 2])


def _flipped_nifti(root: Path) -> str:
    """A .nii.gz of the test volume with a block of bytes inside its compressed data flipped (damaged in transit)."""
    data = bytearray(Path(_nifti(root / "whole.nii.gz", _volume())).read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(255 - b for b in data[middle : middle + 16])
    return _garbage(root, "flipped.nii.gz", bytes(data))


def _damaged_nifti_header(root: Path, name: str, offset: int, value: np.ndarray) -> str:
    """A .nii of the test volume whose header holds ``value`` (with its dtype's bytes) at byte ``offset``."""
    data = bytearray(Path(_nifti(root / "whole.nii", _volume())).read_bytes())
    data[offset : offset + value.nbytes] = value.tobytes()
    return _garbage(root, name, bytes(data))


def _zero_slice_spacing_nifti() -> bytes:
    """A NIfTI placed by its qform alone whose pixdim[3] (the slice spacing) is 0."""
    image = nib.Nifti1Image(_volume(), None)
    image.set_qform(np.diag([0.8, 0.8, 2.5, 1.0]), code=1)
    stored = bytearray(image.to_bytes())
    stored[88:92] = np.float32(0.0).tobytes()  # pixdim[3]: 76 + 3 * 4
    return bytes(stored)


def _voxels_cut_off(root: Path, name: str = "cut.nii.gz") -> str:
    """A .nii.gz whose header is whole and whose voxels are cut off (its first 400 bytes, compressed again)."""
    data = nib.Nifti1Image(_volume(), np.eye(4)).to_bytes()
    return _garbage(root, name, gzip.compress(data[:400]))


def _tiny_network() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 1, 1))


def _weights(root: Path, state: object) -> Path:
    path = root / "model.pt"
    torch.save(state, path)
    return path


def _onnx_of_earlier_weights(root: Path) -> str:
    # exported as the bundles' export command does (fingerprint in the metadata), then model.pt trained again
    import onnx  # the ONNX extra

    network = _tiny_network()
    weights = _weights(root, network.state_dict())
    with torch.no_grad():
        torch.onnx.export(network, (torch.rand(1, 3, 8, 8),), str(root / "model.onnx"), dynamo=False)
    model = onnx.load(str(root / "model.onnx"))
    model.metadata_props.add(key=WEIGHTS_FINGERPRINT_KEY, value=weights_fingerprint(weights))
    onnx.save(model, str(root / "model.onnx"))
    _weights(root, _tiny_network().state_dict())
    return _raised(lambda: OnnxRuntimeNetwork(root / "model.onnx", weights=weights))


def _inference_failure(root: Path, bundle: str, name: str, content: bytes | None) -> str:
    """Inference over a folder with one bad file: the row of failures.csv that names it."""
    folder = root / "inputs"
    folder.mkdir()
    if content is not None:
        (folder / name).write_bytes(content)
    _nifti(folder / "good.nii.gz", _volume()) if bundle == CT else _png(folder / "good.png", _rgb())
    cases = list_cases(root, input_dir=folder, volumes=bundle == CT)
    if content is None:
        cases.append({"image": str(folder / name)})
    processed, failures = processed_cases(cases, _component(bundle, "preprocessing", ("inference.yaml",)))
    assert len(processed) == 1, "the good case must go on"
    return "; ".join(f"{Path(f['file']).name}: {f['error']}" for f in failures)


def _evaluation_failure(root: Path, image: np.ndarray, label: np.ndarray) -> str:
    case = {"image": _nifti(root / "img.nii.gz", image), "label": _nifti(root / "lab.nii.gz", label)}
    good = {"image": _nifti(root / "ok.nii.gz", _volume()), "label": _nifti(root / "ok_l.nii.gz", _labels())}
    transform = _component(CT, "validate#preprocessing", ("train.yaml", "evaluate.yaml"))
    processed, failures = processed_cases([case, good], transform)
    assert len(processed) == 1, "the good case must go on"
    return failures[0]["error"]


def _cli(*args: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = cli.main(list(args))
        except SystemExit as usage_error:  # argparse's: a value out of range for the option
            status = usage_error.code
    return f"exit {status}: {out.getvalue().strip()} {err.getvalue().strip()}"


def _resume(root: Path, state: object, epochs: int = 3) -> str:
    net = _tiny_network()
    path = root / "checkpoint.pt"
    if state is not None:
        torch.save(state, path)
    engine = Engine(lambda e, b: None)
    TrainingCheckpoint(path, {"model": net}).attach(engine)
    epochs_run: list[int] = []
    engine.add_event_handler(Events.EPOCH_STARTED, lambda e: epochs_run.append(e.state.epoch))
    return _raised(lambda: engine.run([0], max_epochs=epochs)) + f"; epochs run: {epochs_run}"


def _resume_with_another_learning_rate(root: Path) -> str:
    # a checkpoint of a training at learning rate 0.001 (model and optimizer), resumed with --learning_rate 0.1
    net = _tiny_network()
    path = root / "checkpoint.pt"
    saved = torch.optim.AdamW(net.parameters(), lr=0.001).state_dict()
    torch.save({"model": net.state_dict(), "optimizer": saved, "trainer": {"epoch": 1, "iteration": 1}}, path)
    engine = Engine(lambda e, b: None)
    TrainingCheckpoint(path, {"model": net, "optimizer": torch.optim.AdamW(net.parameters(), lr=0.1)}).attach(engine)
    return _raised(lambda: engine.run([0], max_epochs=3))


def _resume_with_another_spacing(root: Path) -> str:
    # a checkpoint of a CT training with --pixdim [1.2, 1.2, 3.0], resumed without it (the plan's spacing)
    net = _tiny_network()
    path = root / "checkpoint.pt"
    trained = BestModelSaver(root / "model.pt", net, plan={**DEFAULT_PLAN, "spacing": [1.2, 1.2, 3.0]}, plan_file=path)
    state = {"model": net.state_dict(), "best_model": trained.state_dict(), "trainer": {"epoch": 1, "iteration": 1}}
    torch.save(state, path)
    engine = Engine(lambda e, b: None)
    saver = BestModelSaver(root / "model.pt", net, plan=DEFAULT_PLAN, plan_file=root / "plan.json")
    TrainingCheckpoint(path, {"model": net, "best_model": saver}).attach(engine)
    return _raised(lambda: engine.run([0], max_epochs=3))


def _plan_copied_from_another_fold(root: Path) -> str:
    """Evaluation of fold 1, whose plan_fold1.json is a copy of fold 0's."""
    save_plan({**DEFAULT_PLAN, "fold": 0}, root / "models" / "plan_fold1.json")
    folds = {"ckpt_dir": str(root / "models"), "num_folds": 2, "fold": 1}
    return _raised(lambda: _component(CT, "plan", ("train.yaml", "evaluate.yaml"), bundle_root=str(root), **folds))


def _ct_volume_dicom_two_series(root: Path) -> str:
    from monai_unets.scripts.demo_ct import generate_demo_ct

    data = generate_demo_ct(root / "ct", num_cases=1, num_test=2, shape=(16, 16, 6), spacing=(2, 2, 3), dicom=True)
    folder = root / "two_series"
    folder.mkdir()
    for series in sorted((Path(data).parent / "dicomTs").iterdir()):
        for f in series.iterdir():
            (folder / f"{series.name}_{f.name}").write_bytes(f.read_bytes())
    label = _nifti(root / "lab.nii.gz", _labels((16, 16, 6)))
    return _check(CT, {"image": str(folder), "label": label})


def _dicom_series(root: Path) -> Path:
    """A DICOM CT series in ``root/in/study``."""
    from monai_unets.scripts.demo_ct import write_dicom_series

    return write_dicom_series(_volume((16, 16, 6)), root / "in" / "study", (2.0, 2.0, 3.0), (0.0, 0.0, 0.0)).folder


def _dicom_series_and_seg(root: Path) -> tuple[Path, Path]:
    """A DICOM CT series in ``root/in/study`` and the DICOM SEG an inference run writes for it."""
    from monai_unets.data.dicom_seg import write_dicom_seg

    series = _dicom_series(root)
    seg = write_dicom_seg(_labels((16, 16, 6)), series, root / "study_seg.dcm", {1: "pancreas", 2: "cancer"})
    return series, seg


def _htj2k_slice(root: Path) -> bytes:
    """A CT slice whose pixel data is HTJ2K, which neither ITK's GDCM nor pydicom without pylibjpeg decodes."""
    import pydicom
    from pydicom.encaps import encapsulate

    ds = pydicom.dcmread(min(_dicom_series(root).iterdir()))
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.201"  # HTJ2K Lossless
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + bytes(100)])
    ds["PixelData"].VR, ds["PixelData"].is_undefined_length = "OB", True
    buffer = io.BytesIO()
    ds.save_as(buffer)
    return buffer.getvalue()


def _copied_slice(root: Path) -> str:
    """A DICOM series whose first slice lies in its folder a second time, under a download's copy name."""
    series = _dicom_series(root)
    first = min(series.iterdir())
    (series / f"{first.stem} (1).dcm").write_bytes(first.read_bytes())
    return _check(CT, {"image": str(series), "label": _nifti(root / "lab.nii.gz", _labels((16, 16, 6)))})


def _colour_dicom_series(
    root: Path, photometric: str = "RGB", samples: int = 3, rescale: bool = False, bits: int = 8
) -> str:
    """A DICOM series of colour slices (a colour rendering of a scan) as a CT bundle's training image: of colour
    model ``photometric`` with ``samples`` samples per pixel of ``bits`` bits; a palette gets a grey ramp of 16-bit
    entries. ``rescale`` keeps the scan's RescaleSlope and RescaleIntercept (-1024), as some converters do."""
    import pydicom

    series = _dicom_series(root)
    for path in series.iterdir():
        ds = pydicom.dcmread(path)
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = samples, photometric, 0
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits, bits - 1, 0
        ds.PixelData = bytes(16 * 16 * samples * bits // 8)
        for keyword in () if rescale else ("RescaleSlope", "RescaleIntercept", "RescaleType"):
            ds.pop(keyword, None)  # colour has no rescale to modality values
        if photometric == "PALETTE COLOR":
            for colour in range(3):
                ds.add_new(0x00281101 + colour, "US", [256, 0, 16])
                ds.add_new(0x00281201 + colour, "OW", np.arange(256, dtype=np.uint16).tobytes())
        ds.save_as(path)
    return _check(CT, {"image": str(series), "label": _nifti(root / "lab.nii.gz", _labels((16, 16, 6)))})


def _rgb_dicom_2d(root: Path) -> str:
    """A 16-bit RGB DICOM slice that keeps its scan's RescaleSlope and RescaleIntercept (-1024), as a skin lesion
    bundle's training image."""
    import pydicom

    ds = pydicom.dcmread(min(_dicom_series(root).iterdir()))
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = bytes(16 * 16 * 3 * 2)
    ds.save_as(root / "img.dcm")
    return _check(SKIN, {"image": str(root / "img.dcm"), "label": _png(root / "m.png", _mask((16, 16)))})


def _colour_enhanced_dicom(root: Path) -> str:
    """An RGB enhanced multi-frame DICOM that still carries the Pixel Value Transformation (rescale) groups of the
    scan it was made from, as a CT bundle's training image."""
    import pydicom

    from tests.geometry import write_enhanced_ct

    path = write_enhanced_ct(_dicom_series(root), root / "enhanced.dcm")
    ds = pydicom.dcmread(path)
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = bytes(16 * 16 * 3 * 6)
    ds.save_as(path)
    return _check(CT, {"image": str(path), "label": _nifti(root / "lab.nii.gz", _labels((16, 16, 6)))})


def _sitk_file(root: Path, name: str, array: np.ndarray, components: int = 1) -> str:
    """``array`` (x, y, z) written by SimpleITK as ``name`` (NRRD, MHA, or a detached .nhdr/.mhd and its .raw), with
    ``components`` values per voxel."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(array.transpose(2, 1, 0))
    image = sitk.Compose([image] * components) if components > 1 else image
    path = root / name
    sitk.WriteImage(image, str(path))
    return str(path)


def _sitk_bytes(root: Path, name: str, keep: float = 1.0) -> bytes:
    """The first ``keep`` of the bytes of a CT volume that SimpleITK wrote as ``name`` (of a detached header: the
    header's alone)."""
    data = Path(_sitk_file(root, name, _volume())).read_bytes()
    return data[: int(len(data) * keep)]


def _detached_headers(root: Path) -> str:
    """Inference over a folder of a .nhdr, then of a .mhd, each without the .raw file its header names."""
    seen = []
    for name in ("ct.nhdr", "ct.mhd"):
        header = _sitk_bytes(root, name)
        (root / name).unlink()
        (root / "ct.raw").unlink()
        (root / name.replace(".", "_")).mkdir()
        seen.append(_inference_failure(root / name.replace(".", "_"), CT, f"lone{Path(name).suffix}", header))
    return "; ".join(seen)


def _seg_beside_its_series(root: Path) -> str:
    """The warnings of listing and reading an input folder where an earlier run's SEG lies beside the series and
    inside its folder."""
    series, seg = _dicom_series_and_seg(root)
    (series / "SEG.dcm").write_bytes(seg.read_bytes())
    (root / "in" / "earlier_seg.dcm").write_bytes(seg.read_bytes())
    with pytest.warns(UserWarning) as warned:
        cases = list_medical_cases(root / "in", split_series=True)
        _component(CT, "preprocessing", ("inference.yaml",))(cases[0])
    shown = [str(w.message).replace(str(root), "<root>") for w in warned if "skipping" in str(w.message)]
    return "; ".join(shown) + f"; cases: {[Path(c['image']).name for c in cases]}"


def _scouts_beside_their_series(root: Path) -> str:
    """The warning of reading a study folder that holds a CT series and its scouts as a series of their own."""
    import pydicom

    series = _dicom_series(root)
    uid = pydicom.uid.generate_uid()
    for number, orientation in enumerate(([1, 0, 0, 0, 0, -1], [0, 1, 0, 0, 0, -1]), start=1):
        ds = pydicom.dcmread(min(series.iterdir()))
        ds.ImageType, ds.ImageOrientationPatient = ["ORIGINAL", "PRIMARY", "LOCALIZER"], orientation
        ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.SeriesNumber = uid, pydicom.uid.generate_uid(), 1
        ds.save_as(series / f"SCOUT{number}.dcm")
    [case] = list_medical_cases(root / "in", split_series=True)
    with pytest.warns(UserWarning) as warned:
        image = _component(CT, "preprocessing", ("inference.yaml",))(case)["image"]
    assert image.shape[-1] > 2  # the CT's slices, not the two scouts
    shown = [str(w.message).replace(str(root), "<root>").replace(uid, "<uid>") for w in warned]
    return "; ".join(m for m in shown if "skipping" in m)


def _dose_page_beside_its_series(root: Path) -> str:
    """The warning of reading a study folder that holds a CT series and its dose report page (a secondary capture)."""
    import pydicom

    series = _dicom_series(root)
    ds = pydicom.dcmread(min(series.iterdir()))
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = pydicom.uid.SecondaryCaptureImageStorage
    ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.SeriesNumber = (
        pydicom.uid.generate_uid(),
        pydicom.uid.generate_uid(),
        999,
    )
    ds.save_as(series / "DOSE.dcm")
    [case] = list_medical_cases(root / "in", split_series=True)
    with pytest.warns(UserWarning) as warned:
        _component(CT, "preprocessing", ("inference.yaml",))(case)
    shown = [str(w.message).replace(str(root), "<root>").replace(ds.SeriesInstanceUID, "<uid>") for w in warned]
    return "; ".join(m for m in shown if "skipping" in m)


def _series_split_over_folders(root: Path) -> str:
    """The failure of each folder of a series that a CD writer split over two folders, beside a whole series."""
    import shutil

    import pydicom

    series = _dicom_series(root)
    files = sorted(series.iterdir())
    for part, chunk in (("0001", files[:3]), ("0002", files[3:])):
        (root / "in" / "IMAGES" / part).mkdir(parents=True)
        for path in chunk:
            shutil.move(path, root / "in" / "IMAGES" / part / path.name)
    series.rmdir()
    _dicom_series(root)
    cases = list_cases(root, input_dir=root / "in", volumes=True)
    processed, failures = processed_cases(cases, _component(CT, "preprocessing", ("inference.yaml",)))
    assert len(processed) == 1 and len(failures) == 2, "the whole series must go on"
    uid = str(pydicom.dcmread(min((root / "in" / "IMAGES" / "0001").iterdir())).SeriesInstanceUID)
    return failures[0]["error"].replace(str(root), "<root>").replace(uid, "<uid>")


def _document_in_a_flat_export(root: Path) -> str:
    """The warning of reading a series folder that holds an export's readme.txt beside the slices."""
    series = _dicom_series(root)
    (series / "readme.txt").write_text("exported by a PACS")
    [case] = list_medical_cases(root / "in", split_series=True)
    with pytest.warns(UserWarning) as warned:
        image = _component(CT, "preprocessing", ("inference.yaml",))(case)["image"]
    assert image.shape[-1] > 2
    shown = [str(w.message).replace(str(root), "<root>") for w in warned]
    return "; ".join(m for m in shown if "skipping" in m)


def _kill_mid_save(root: Path) -> str:
    path = root / "model.pt"
    torch.save({"w": torch.ones(2)}, path)

    def interrupted() -> None:
        with atomic_open(path, "wb") as f:
            f.write(b"partial")
            raise OSError(28, "No space left on device")

    message = _raised(interrupted)
    kept = torch.load(path, weights_only=True)["w"].tolist()
    leftovers = [p.name for p in root.iterdir() if p.name != "model.pt"]
    return f"{message}; model.pt still holds {kept}; other files: {leftovers}"


def _best_kept(root: Path) -> str:
    path = root / "model.pt"
    net = _tiny_network()
    saver = BestModelSaver(path, net, metric_name="dice")
    saver.load_state_dict({"best_metric": 0.9, "best_metric_epoch": 4})
    torch.save({"marker": torch.tensor(1.0)}, path)
    engine = Engine(lambda e, b: None)
    saver.attach(engine)
    engine.state.metrics = {"dice": 0.5}
    saver(engine)
    return f"model.pt kept: {list(torch.load(path, weights_only=True))}"


def _ensemble_of_other_plans(root: Path) -> str:
    """Inference with two folds whose plans differ: what the run stops with when its settings are checked."""
    for fold, spacing in enumerate(([1.5, 1.5, 2.0], [2.0, 2.0, 2.5])):
        save_plan({**DEFAULT_PLAN, "spacing": spacing}, root / "models" / f"plan_fold{fold}.json")
        (root / "models" / f"model_fold{fold}.pt").touch()
    ensemble = ["model_fold0.pt", "model_fold1.pt"]
    return _raised(lambda: _component(CT, "settings", ("inference.yaml",), bundle_root=str(root), ensemble=ensemble))


def _ensemble_with_a_missing_fold(root: Path) -> str:
    """Inference with three folds listed, fold 2 never trained: what the run stops with when its settings are
    checked."""
    for fold in (0, 1):
        save_plan(DEFAULT_PLAN, root / "models" / f"plan_fold{fold}.json")
        (root / "models" / f"model_fold{fold}.pt").touch()
    ensemble = ["model_fold0.pt", "model_fold1.pt", "model_fold2.pt"]
    return _raised(lambda: _component(CT, "settings", ("inference.yaml",), bundle_root=str(root), ensemble=ensemble))


def _ensemble_listing_a_fold_twice(root: Path) -> str:
    """The members of an ensemble with model_fold0.pt listed twice, as the CT inference loads them at start."""
    torch.save(_tiny_network().state_dict(), root / "model_fold0.pt")
    torch.save(_tiny_network().state_dict(), root / "model_fold1.pt")
    listed = [root / "model_fold0.pt", root / "model_fold1.pt", root / "model_fold0.pt"]
    return _raised(lambda: EnsembleInferer(SimpleInferer(), listed).members(_tiny_network()))


def _plan_without_spacing(root: Path) -> str:
    """Inference whose models/plan.json was cut or edited and lost its spacing."""
    save_plan({k: v for k, v in DEFAULT_PLAN.items() if k != "spacing"}, root / "models" / "plan.json")
    return _raised(lambda: _component(CT, "plan", ("inference.yaml",), bundle_root=str(root)))


def _bundle_run(root: Path, bundle: str, config: str, *args: str) -> str:
    folder = bundle_dir(bundle)
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(folder / "configs" / config)]
    command += ["--bundle_root", str(root), "--dataset_dir", str(root), *args]
    result = subprocess.run(command, capture_output=True, text=True)
    lines = (result.stdout + result.stderr).strip().splitlines()
    log = root / "logs" / "error.log"
    traceback_logged = log.is_file() and "Traceback" in log.read_text()
    return f"exit {result.returncode}; last line: {lines[-1]}; traceback in logs/error.log: {traceback_logged}"


_V = _volume()
_STOP = "training stops before its first epoch (bad_case_policy error) or skips the case (skip); check-data exit 1"
_STOP_SETTING = "the run stops at start, before any data is read"
_EVAL = "the case gets a row in failures.csv; the other cases are evaluated"
_INFER = "the file gets a row in failures.csv; the other inputs are processed"


def _nan(v: np.ndarray, value: float, count: int = 3) -> np.ndarray:
    v = v.copy()
    v.flat[:count] = value
    return v


def _affine(shift=(0.0, 0.0, 0.0), flip: bool = False) -> np.ndarray:
    """1 mm voxels of the 16-voxel-wide test volume; ``flip`` stores the x axis right to left (same voxel centres
    for no shift)."""
    a = np.eye(4)
    a[:3, 3] = shift
    if flip:
        a[0, 0] = -1
        a[0, 3] += 15
    return a


CATALOGUE: list[Fault] = [
    # --- datalists (training, check-data)
    Fault(
        "training, check-data",
        "datalist file missing",
        lambda r: _raised(lambda: load_datalist(r / "none.json")),
        "datalist does not exist",
        _STOP_SETTING,
    ),
    Fault(
        "training, check-data",
        "datalist is not valid JSON (trailing comma)",
        lambda r: _datalist(r, '{"training": [{"image": "a", "label": "b"},]}'),
        "is not valid JSON",
        _STOP_SETTING,
    ),
    Fault(
        "training, check-data, plan",
        "nnU-Net's `ignore` label (sparse annotation) in dataset.json",
        _ignore_label,
        "label 2 is nnU-Net's 'ignore' label (voxels a sparse annotation leaves unannotated); sparse annotation is not "
        "supported",
        _STOP_SETTING,
    ),
    Fault(
        "training, check-data",
        "CT bundle, no plan.json, dataset.json of another modality and labels",
        _mr_without_plan,
        "does not fit this dataset: its modality is 'MR', not CT; it declares 2 labels (background, CSF), the default "
        "plan 3. Run `monai-unets plan",
        _STOP_SETTING,
    ),
    Fault(
        "training, check-data",
        "datalist outside dataset_dir with paths relative to its own folder",
        _datalist_beside_the_dataset,
        "where data/images/a.png does not exist; it does relative to the datalist's own folder",
        _STOP_SETTING,
    ),
    Fault(
        "training, inference, evaluation, check-data",
        "a datalist path written as a URI (file:///data/a.png)",
        lambda r: _datalist(r, '{"training": [{"image": "file:///data/a%20b.png", "label": "b.png"}]}'),
        "entry 0 of 'training': image file:///data/a%20b.png is a URI; a datalist lists files by their paths: write "
        "/data/a b.png.",
        _STOP_SETTING,
    ),
    Fault(
        "training, inference, evaluation, check-data",
        "a datalist path with Windows backslashes (images\\\\a.png)",
        lambda r: _datalist(r, '{"training": [{"image": "images\\\\a.png", "label": "b.png"}]}'),
        "image images\\a.png does not exist, and backslashes do not separate folders on this system; write the "
        "datalist's paths with '/' (images/a.png).",
        _STOP_SETTING,
    ),
    Fault(
        "evaluation",
        "2D test list without labels",
        _unlabelled_test_list,
        "1 of the 1 cases of 'test' have no 'label'",
        _STOP_SETTING,
    ),
    Fault(
        "training, check-data",
        "datalist is a binary file",
        lambda r: _raised(lambda: load_datalist(_garbage(r, "d.json", b"\xff\xfe\x00\x81"))),
        "not a text file",
        _STOP_SETTING,
    ),
    Fault(
        "training, check-data",
        "datalist is a JSON list, not an object",
        lambda r: _datalist(r, "[]"),
        "must be a JSON object",
        _STOP_SETTING,
    ),
    Fault(
        "training, check-data",
        "datalist has no `training` list",
        lambda r: _datalist(r, '{"validation": []}'),
        "has no 'training' list (its lists: validation)",
        _STOP_SETTING,
    ),
    Fault(
        "training, check-data",
        "`training` is not a list",
        lambda r: _datalist(r, '{"training": {}}'),
        "must be a list of cases",
        _STOP_SETTING,
    ),
    Fault(
        "training, check-data",
        "a case is a string, not an object",
        lambda r: _datalist(r, '{"training": ["a"]}'),
        "entry 0 of 'training' must be an object",
        _STOP_SETTING,
    ),
    Fault(
        "training, check-data",
        "a case has no `image`",
        lambda r: _datalist(r, '{"training": [{"label": "b"}]}'),
        "must be an object with an 'image'",
        _STOP_SETTING,
    ),
    Fault(
        "training, check-data",
        "a case has no `label`",
        lambda r: _check(CT, {"image": _nifti(r / "i.nii", _V)}),
        "has no 'label' in the datalist",
        _STOP,
    ),
    Fault(
        "training, check-data",
        "image file missing",
        lambda r: _check(CT, {"image": str(r / "gone.nii.gz"), "label": _nifti(r / "l.nii", _labels())}),
        "gone.nii.gz: image file does not exist",
        _STOP,
    ),
    Fault(
        "training, check-data",
        "label file missing",
        lambda r: _check(CT, {"image": _nifti(r / "i.nii", _V), "label": str(r / "gone.nii.gz")}),
        "gone.nii.gz: label file does not exist",
        _STOP,
    ),
    Fault(
        "training, check-data",
        "image path is a number",
        lambda r: _check(CT, {"image": 3, "label": 4}),
        "'image' must be a path",
        _STOP,
    ),
    # --- 3D images and labels (training, check-data; the same checks run in evaluation)
    Fault(
        "training, check-data",
        "image is not a NIfTI (garbage in .nii.gz)",
        lambda r: _check(
            CT, {"image": _garbage(r, "bad.nii.gz", b"not an image"), "label": _nifti(r / "l.nii", _labels())}
        ),
        "bad.nii.gz: cannot read the image file: ValueError: is not gzip-compressed, as its .gz says",
        _STOP,
    ),
    Fault(
        "training, check-data",
        "image truncated (half a .nii.gz)",
        lambda r: _check(CT, {"image": _truncated_nifti(r), "label": _nifti(r / "l.nii", _labels())}),
        "cut.nii.gz: cannot read the image file: ValueError: its compressed image data end early or are damaged",
        _STOP,
    ),
    Fault(
        "training, check-data",
        "label truncated (half a .nii.gz)",
        lambda r: _check(CT, {"image": _nifti(r / "i.nii.gz", _volume()), "label": _truncated_nifti(r)}),
        "cut.nii.gz: cannot read the label file: ValueError: its compressed image data end early or are damaged",
        _STOP,
    ),
    Fault(
        "training, check-data",
        "image damaged inside its .nii.gz (a block of bytes flipped in transit)",
        lambda r: _check(CT, {"image": _flipped_nifti(r), "label": _nifti(r / "l.nii", _labels())}),
        "flipped.nii.gz: cannot read the image file: ValueError: its compressed image data end early or are damaged",
        _STOP,
    ),
    Fault(
        "training, check-data",
        "image cut off after its header (the .nii.gz whole, its voxels missing)",
        lambda r: _check(CT, {"image": _voxels_cut_off(r), "label": _nifti(r / "l.nii", _labels())}),
        "cut.nii.gz: cannot read the image file: ValueError: the image data is truncated: 48 of 8192 bytes",
        _STOP,
    ),
    Fault(
        "training, check-data",
        "image with a damaged NIfTI header: dim[0] 9 (outside 1 to 7), a negative dimension, an unknown datatype",
        lambda r: "; ".join(
            _check(
                CT, {"image": _damaged_nifti_header(r, name, offset, value), "label": _nifti(r / "l.nii", _labels())}
            )
            for name, offset, value in (
                ("ndim.nii", 40, np.int16(9)),
                ("negative.nii", 44, np.int16(-16)),
                ("datatype.nii", 70, np.int16(999)),
            )
        ),
        "ndim.nii: cannot read the image file: ValueError: the NIfTI header is damaged: dim[0], its number of "
        "dimensions, is 9; it must be 1 to 7",
        _STOP,
    ),
    Fault(
        "training, check-data",
        "image is an empty file",
        lambda r: _check(CT, {"image": _garbage(r, "empty.nii.gz", b""), "label": _nifti(r / "l.nii", _labels())}),
        "empty.nii.gz: cannot read the image file: ValueError: is empty (0 bytes)",
        _STOP,
    ),
    Fault(
        "training, check-data",
        "image in an unsupported format (.txt)",
        lambda r: _check(CT, {"image": _garbage(r, "notes.txt", b"x"), "label": _nifti(r / "l.nii", _labels())}),
        "notes.txt: cannot read the image file: ValueError: is not a supported image",
        _STOP,
    ),
    Fault(
        "training, check-data",
        "a 2D image given to a 3D bundle",
        lambda r: _ct_case(r, image=_V[..., 0], label=_labels()[..., 0]),
        "a 2D image",
        _STOP,
    ),
    Fault(
        "training, check-data",
        "a 4D image (two volumes) given to a 1-channel bundle",
        lambda r: _ct_case(r, image=np.stack([_V, _V], -1)),
        "has 2 channels",
        _STOP,
    ),
    Fault(
        "training, check-data",
        "NaN voxels in the image",
        lambda r: _ct_case(r, image=_nan(_V, np.nan)),
        "has 3 NaN and 0 infinite voxels; fix the file, or set nan_policy to 'replace'",
        _STOP,
    ),
    Fault(
        "training, check-data, plan",
        "an image of one value everywhere (a blank or failed export) under a drawn label",
        lambda r: _ct_case(r, image=np.full_like(_V, -1024)),
        "image holds one value everywhere (-1024) while its label marks foreground: a blank or failed export",
        _STOP,
    ),
    Fault(
        "training, check-data",
        "infinite voxels in the image",
        lambda r: _ct_case(r, image=_nan(_V, np.inf)),
        "has 0 NaN and 3 infinite voxels",
        _STOP,
    ),
    Fault(
        "training, check-data",
        "NaN voxels with nan_policy replace",
        lambda r: _ct_case(r, image=_nan(_V, np.nan), nan_policy="replace"),
        "accepted",
        "the case is used; a warning names the file and the count of replaced voxels",
    ),
    Fault(
        "training, check-data",
        "an image of NaN only, with nan_policy replace",
        lambda r: _ct_case(r, image=np.full((16, 16, 8), np.nan, np.float32), nan_policy="replace"),
        "has no finite voxel",
        _STOP,
    ),
    Fault(
        "training, check-data",
        "label of another shape than its image",
        lambda r: _ct_case(r, label=_labels((16, 16, 6))),
        "label has spatial shape (16, 16, 6) but its image",
        _STOP,
    ),
    Fault(
        "training, check-data",
        "label shifted 5 mm against its image (affines differ)",
        lambda r: _ct_case(r, label_affine=_affine((5.0, 0, 0))),
        "label is placed up to 5 mm away",
        _STOP,
    ),
    Fault(
        "training, check-data",
        "label mirrored left-right onto other positions",
        lambda r: _ct_case(r, label_affine=_affine((-4.0, 0, 0), flip=True)),
        "mm away from its image",
        _STOP,
    ),
    Fault(
        "training, check-data",
        "label stored right to left, the image left to right (same voxel centres)",
        lambda r: _ct_case(r, label_affine=_affine(flip=True)),
        "accepted",
        "the case is used, its label taken in the image's voxel order",
    ),
    Fault(
        "training, check-data",
        "label shifted 0.001 mm (rounding in the header)",
        lambda r: _ct_case(r, label_affine=_affine((0.001, 0, 0))),
        "accepted",
        "the case is used (within affine_tolerance, 0.01 mm)",
    ),
    Fault(
        "training, check-data",
        "label value above the classes (3 with num_classes 3)",
        lambda r: _ct_case(r, label=_labels(values=(0, 1, 3))),
        "label values 3 are not classes 0..2",
        _STOP,
    ),
    Fault(
        "training, check-data",
        "negative label value",
        lambda r: _ct_case(r, label=_labels(values=(0, 1, 2)) - 1.0),
        "label values -1 are not classes",
        _STOP,
    ),
    Fault(
        "training, check-data",
        "fractional label values (an interpolated label)",
        lambda r: _ct_case(r, label=_labels().astype(np.float32) * 0.5),
        "label values 0.5 are not classes",
        _STOP,
    ),
    Fault(
        "training, check-data",
        "NaN in the label",
        lambda r: _ct_case(r, label=_nan(_labels().astype(np.float32), np.nan)),
        "label has NaN or infinite values",
        _STOP,
    ),
    Fault(
        "training, check-data",
        "label with two channels (4D label)",
        lambda r: _ct_case(r, label=np.stack([_labels(), _labels()], -1)),
        "label has 2 channels",
        _STOP,
    ),
    Fault(
        "training, check-data",
        "a DICOM folder holding two series",
        _ct_volume_dicom_two_series,
        "holds 2 series, which are never merged",
        _STOP,
    ),
    Fault(
        "training, check-data",
        "a DICOM SEG as the label",
        lambda r: _check(CT, dict(zip(("image", "label"), map(str, _dicom_series_and_seg(r))))),
        "Segmentation Storage object, not an image; DICOM SEG labels are not supported either: convert",
        _STOP,
    ),
    Fault(
        "training, check-data",
        'a DICOM series folder with one slice twice under two names ("IM0004 (1).dcm", a second download)',
        _copied_slice,
        "holds one instance twice",
        _STOP,
    ),
    Fault(
        "training, check-data",
        "a colour (RGB) DICOM series as a CT image",
        _colour_dicom_series,
        "is a colour DICOM image (RGB: 3 samples per pixel",
        _STOP,
    ),
    Fault(
        "training, check-data",
        "a 16-bit colour (RGB) DICOM series as a CT image",
        lambda r: _colour_dicom_series(r, bits=16),
        "IM0001.dcm: is a colour DICOM image (RGB: 3 samples per pixel of 16 bits), which cannot be read",
        _STOP,
    ),
    Fault(
        "training, check-data",
        "a palette colour DICOM series (PALETTE COLOR: one sample per pixel, its colours in a palette) as a CT image",
        lambda r: _colour_dicom_series(r, "PALETTE COLOR", 1),
        "is a colour DICOM image (PALETTE COLOR: 3 samples per pixel",
        _STOP,
    ),
    Fault(
        "training, check-data",
        "a palette colour DICOM series that keeps the RescaleSlope and RescaleIntercept (-1024) of its scan",
        lambda r: _colour_dicom_series(r, "PALETTE COLOR", 1, rescale=True),
        "is a colour DICOM image (PALETTE COLOR: 3 samples per pixel",
        _STOP,
    ),
    Fault(
        "training, check-data",
        "an RGB enhanced multi-frame DICOM that keeps the rescale groups (Pixel Value Transformation) of its scan",
        _colour_enhanced_dicom,
        "enhanced.dcm: is a colour DICOM image (RGB: 3 samples per pixel",
        _STOP,
    ),
    Fault(
        "training, check-data",
        "a DICOM series whose PhotometricInterpretation contradicts its SamplesPerPixel (RGB over one sample)",
        lambda r: _colour_dicom_series(r, "RGB", 1),
        "has PhotometricInterpretation RGB with SamplesPerPixel 1: RGB stores 3 samples per pixel",
        _STOP,
    ),
    Fault(
        "training, check-data",
        "an RGB NIfTI or a vector NRRD (3 values per voxel) as a CT image",
        lambda r: "; ".join(
            _check(CT, {"image": image, "label": _nifti(r / "l.nii.gz", _labels())})
            for image in (
                _nifti(r / "rgb.nii.gz", np.zeros((16, 16, 8), [("R", "u1"), ("G", "u1"), ("B", "u1")])),
                _sitk_file(r, "vector.nrrd", _volume(), components=3),
            )
        ),
        "holds 3 values per voxel (colour or vector components), read as 3 channels",
        _STOP,
    ),
    Fault(
        "training, check-data",
        "an int64 NRRD label with values beyond 2**53",
        lambda r: _check(
            CT,
            {
                "image": _nifti(r / "i.nii.gz", _volume()),
                "label": _sitk_file(r, "big.nrrd", _labels().astype(np.int64) * 2**60),
            },
        ),
        "cannot read the label file: ValueError: holds 64-bit integers up to 2305843009213693952, beyond 2**53",
        _STOP,
    ),
    Fault(
        "training, check-data",
        "an empty folder as the image",
        lambda r: (
            (r / "empty").mkdir() or _check(CT, {"image": str(r / "empty"), "label": _nifti(r / "l.nii", _labels())})
        ),
        "holds no DICOM file",
        _STOP,
    ),
    # --- 2D images and masks
    Fault(
        "training, check-data",
        "corrupt JPEG image",
        lambda r: _check(
            SKIN, {"image": _garbage(r, "x.jpg", b"\xff\xd8garbage"), "label": _png(r / "m.png", _mask())}
        ),
        "x.jpg: cannot read the image file: UnidentifiedImageError: cannot identify the image file (not an image PIL",
        _STOP,
    ),
    Fault(
        "training, check-data",
        "an animated GIF, PNG or WebP, or a TIFF of several full-size pages (a stack; float RGB too), as the image",
        lambda r: _check(SKIN, {"image": _frames(r / "x.gif"), "label": _png(r / "m.png", _mask())}),
        "x.gif: cannot read the image file: ValueError: holds an animation of 2 frames, not one image; save the one",
        _STOP,
    ),
    Fault(
        "training, check-data",
        "a DICOM image (16-bit RGB, its scan's rescale kept) as a 2D bundle's image",
        _rgb_dicom_2d,
        "img.dcm: cannot read the image file: ValueError: is a DICOM file; Image2DReader reads 2D image files (.png,",
        _STOP,
    ),
    Fault(
        "training, check-data",
        "mask of another size than its image",
        lambda r: _skin_case(r, mask=_mask((20, 32))),
        "label has spatial shape (32, 20) but its image",
        _STOP,
    ),
    Fault(
        "training, check-data",
        "a mask drawn on a phone photograph as a viewer shows it (EXIF orientation 6, the photograph stored sideways)",
        _mask_of_a_turned_photograph,
        "(the image's EXIF orientation 6 shows it turned to the label's size: the label was drawn on the image as "
        "displayed, while images are read as stored; save the image turned as displayed",
        _STOP,
    ),
    Fault(
        "training, check-data",
        "a mask drawn on a phone photograph as a viewer shows it (EXIF orientation 3, the photograph stored upside "
        "down; 2 and 4 mirror it)",
        lambda r: _mask_of_a_turned_photograph(r, 3),
        "label has EXIF orientation 1 and its image",
        _STOP,
    ),
    Fault(
        "training, check-data",
        "greyscale image (1 channel) to an RGB bundle",
        lambda r: _skin_case(r, image=_rgb()[..., 0]),
        "accepted",
        "the case is used: the bundle converts grey, RGBA and palette images to RGB",
    ),
    Fault(
        "training, check-data",
        "RGBA image",
        lambda r: _skin_case(r, image=np.dstack([_rgb(), _rgb()[..., :1]])),
        "accepted",
        "the case is used: converted to RGB",
    ),
    Fault(
        "training, check-data",
        "mask stored as 0/1 instead of 0/255",
        lambda r: _skin_case(r, mask=_mask() // 255),
        "accepted",
        "the case is used: any two-level mask is binarized",
    ),
    Fault(
        "training, check-data",
        "mask of class indices 0/1/2 (a second class an annotation tool added)",
        lambda r: _skin_case(r, mask=_mask() // 255 + (np.arange(32) > 28).astype(np.uint8) * 2),
        "mask values 0, 1, 2 are several classes",
        _STOP,
    ),
    Fault(
        "training, check-data",
        "the image given as its own mask (a datalist that names images/x.jpg for masks/x.jpg)",
        lambda r: _skin_case(r, mask=_rgb()),
        "as in a photograph: is it the image instead of its mask?",
        _STOP,
    ),
    Fault(
        "training, check-data",
        'mask of lesion 1 and a 255 region (a VOC style "void" outline, or another class: 0/1/20 likewise)',
        lambda r: _skin_case(r, mask=(np.where(_mask() > 0, 1, 0) + (np.arange(32) > 24) * 255).astype(np.uint8)),
        "would be read as background, at or below half the maximum",
        _STOP,
    ),
    Fault(
        "training, check-data",
        "mask drawn only in its alpha channel (RGBA or grey and alpha, colour one value)",
        lambda r: _skin_case(r, mask=np.dstack([np.zeros((24, 32, 3), np.uint8), _mask()])),
        "accepted",
        "the case is used: read from its alpha channel",
    ),
    Fault(
        "training, check-data",
        "palette mask (indices 0/1 shown in display colours, VOC style)",
        lambda r: _check(
            SKIN, {"image": _png(r / "img.png", _rgb()), "label": _palette_png(r / "m.png", _mask() // 255, _VOC)}
        ),
        "accepted",
        "the case is used: read by its indices, as most loaders read masks (two classes, 0/1/2, are refused)",
    ),
    Fault(
        "training, check-data",
        "palette mask whose background index 0 is shown white and lesion index 1 black (an RGB mask PIL saves as "
        "GIF looks alike, its white lesion at index 0)",
        lambda r: _check(
            SKIN,
            {
                "image": _png(r / "img.png", _rgb()),
                "label": _palette_png(r / "m.png", _mask() // 255, [(255, 255, 255), (0, 0, 0)]),
            },
        ),
        "palette mask whose lowest index, 0, is shown brighter than its index 1: its indices and its colours give "
        "opposite masks",
        _STOP,
    ),
    Fault(
        "training, check-data",
        "every training mask (label) is empty",
        lambda r: _raised(
            lambda: __import__("monai_unets").data.check_cases(
                [[{"image": _png(r / "img.png", _rgb()), "label": _png(r / "m.png", _mask() * 0)}]],
                _component(SKIN, "load_transforms"),
            )
        ),
        "every one of the 1 readable training labels has no foreground",
        "training stops at start; check-data exit 1 (some empty labels: a warning with their count)",
    ),
    Fault(
        "training, check-data",
        "a mask drawn dark on a light background (white background, lesion black or in a colour)",
        lambda r: _border_filling(
            r,
            np.stack([np.full_like(_mask(), 255), 255 - _mask(), 255 - _mask()], axis=-1),  # a red lesion
        ),
        "have foreground on at least 90% of their border",
        "a warning counting such masks and naming a few (the file alone cannot say which value is the lesion); "
        "the cases are used",
    ),
    Fault(
        "training, check-data",
        "a 0/1 mask saved as JPEG (decoded to values 0..2, as an empty mask's compression noise may be)",
        lambda r: _check(
            SKIN, {"image": _png(r / "img.png", _rgb()), "label": _jpeg(r / "m.jpg", (_mask() // 255).astype(np.uint8))}
        ),
        "a 0/1 mask saved as JPEG, or the compression noise of an empty mask",
        _STOP,
    ),
    Fault(
        "training, check-data",
        "a case of one image file per channel (two 3D files)",
        lambda r: _check(
            CT,
            {
                "image": [_nifti(r / "t1.nii.gz", _V), _nifti(r / "t2.nii.gz", _V)],
                "label": _nifti(r / "l.nii.gz", _labels()),
            },
        ),
        "a case of 2 image files, one per channel",
        _STOP,
    ),
    Fault(
        "training, check-data",
        "a case of one image file per channel, one of them truncated",
        lambda r: _check(
            CT,
            {
                "image": [_garbage(r, "t1.nii.gz", _nifti_bytes(r, _V)[:60]), _nifti(r / "t2.nii.gz", _V)],
                "label": _nifti(r / "l.nii.gz", _labels()),
            },
        ),
        "t1.nii.gz: cannot read the image file",
        _STOP,
    ),
    Fault(
        "training, check-data",
        "a case of one image file per channel, placed 50 mm apart (affines differ)",
        lambda r: _check(
            CT,
            {
                "image": [_nifti(r / "t1.nii.gz", _V), _nifti(r / "t2.nii.gz", _V, _affine((50.0, 0, 0)))],
                "label": _nifti(r / "l.nii.gz", _labels()),
            },
        ),
        "t2.nii.gz is placed up to 50 mm away from",
        _STOP,
    ),
    # --- settings (every bundle checks its settings at start)
    Fault(
        "all bundles",
        "--max_epochs abc",
        lambda r: _setting(SKIN, "max_epochs", "abc"),
        "max_epochs must be an integer >= 1, got 'abc'",
        _STOP_SETTING,
    ),
    Fault(
        "all bundles",
        "--max_epochs 0",
        lambda r: _setting(CT, "max_epochs", 0),
        "max_epochs must be an integer >= 1, got 0",
        _STOP_SETTING,
    ),
    Fault(
        "all bundles",
        "--batch_size 2.5",
        lambda r: _setting(CT, "batch_size", 2.5),
        "batch_size must be an integer >= 1, got 2.5",
        _STOP_SETTING,
    ),
    Fault(
        "all bundles",
        "--learning_rate -1",
        lambda r: _setting(SKIN, "learning_rate", -1),
        "learning_rate must be a number > 0, got -1",
        _STOP_SETTING,
    ),
    Fault(
        "all bundles",
        "--val_fraction 1.5",
        lambda r: _setting(CT, "val_fraction", 1.5),
        "val_fraction must be a number between 0 and 1",
        _STOP_SETTING,
    ),
    Fault(
        "all bundles",
        "--patch_size abc",
        lambda r: _setting(CT, "patch_size", "abc"),
        "patch_size must be a list of integers >= 1",
        _STOP_SETTING,
    ),
    Fault(
        "all bundles",
        "--pixdim [1, 0, 1]",
        lambda r: _setting(CT, "pixdim", [1, 0, 1]),
        "pixdim must be a list of spacings in mm > 0",
        _STOP_SETTING,
    ),
    Fault(
        "all bundles",
        "--nan_policy ignore",
        lambda r: _setting(CT, "nan_policy", "ignore"),
        "nan_policy must be one of 'error', 'replace', got 'ignore'",
        _STOP_SETTING,
    ),
    Fault(
        "all bundles",
        "--bad_case_policy drop",
        lambda r: _setting(SKIN, "bad_case_policy", "drop"),
        "bad_case_policy must be one of 'error', 'skip'",
        _STOP_SETTING,
    ),
    Fault(
        "training (CT bundles)",
        "--max_minutes null (a string, not None)",
        lambda r: _bundle_run(r, CT, "train.yaml", "--max_minutes", "null"),
        "exit 1; last line: ERROR: max_minutes must be a number of minutes > 0, or None for no limit, got 'null'.",
        _STOP_SETTING,
    ),
    Fault(
        "training, evaluation, inference (CT bundles)",
        "--num_classes 4 without --class_names, or class names of another count",
        lambda r: _setting(CT, "num_classes", 4),
        "num_classes 4 and class_names ['pancreas', 'tumour'] do not fit: class_names names labels 1 to "
        "num_classes - 1 (0 is the background), 3 names for num_classes 4, got 2; set num_classes to 3 or give 3 "
        "class_names",
        _STOP_SETTING + "; the plan saved with the weights records the classes of a training given both",
    ),
    Fault(
        "training, evaluation, inference (CT bundles)",
        "--class_names organ (one name, not a list), or a name given twice",
        lambda r: _setting(CT, "class_names", "organ"),
        "class_names must be a list of distinct names, e.g. ['pancreas', 'tumour'], got 'organ'",
        _STOP_SETTING,
    ),
    Fault(
        "all bundles",
        "--resume false (a string, not False)",
        lambda r: _setting(SKIN, "resume", "false"),
        "resume must be True or False (on the command line: --resume False), got 'false'",
        _STOP_SETTING,
    ),
    Fault(
        "all bundles",
        "--num_workers -1",
        lambda r: _setting(CT, "num_workers", -1),
        "num_workers must be an integer >= 0",
        _STOP_SETTING,
    ),
    Fault(
        "all bundles",
        "--output_dir 2024 in a plain monai.bundle run (read as a number)",
        lambda r: _plain_run_line(SKIN, "--output_dir", "2024"),
        "--output_dir 2024: read as the int 2024, not as a path; give it as --output_dir \"'2024'\"",
        _STOP_SETTING + "; the monai-unets commands pass such names quoted",
    ),
    Fault(
        "all bundles",
        "--output_dir res#1 in a plain monai.bundle run (MONAI reads '#' as '::')",
        lambda r: _plain_run_line(SKIN, "--output_dir", "res#1"),
        "MONAI's config parser reads '#' as its id separator, and the path would be res::1; give it as --output_dir "
        "'$\"res\\x231\"'",
        _STOP_SETTING + "; the monai-unets commands pass paths with '#', '@', '$' or '%' as typed",
    ),
    Fault(
        "all bundles",
        "--output_dir a%::b in a plain monai.bundle run (MONAI reads '%::' or '@::' as a relative id)",
        lambda r: _plain_run_line(SKIN, "--output_dir", "a%::b"),
        "MONAI's config parser reads '%::' and '@::' as relative ids, and the path would be a%b; give it as "
        "--output_dir '$\"a\\x25::b\"'",
        _STOP_SETTING + "; it had written into a folder a%b without a word. The monai-unets commands pass such paths "
        "as typed",
    ),
    Fault(
        "all bundles",
        "--input_dir @eaDir in a plain monai.bundle run (MONAI reads it as a reference to a key eaDir)",
        lambda r: _plain_run_line(SKIN, "--input_dir", "@eaDir"),
        "MONAI's config parser reads '@eaDir' as a reference to a config key, and there is no key 'eaDir'; give it "
        "as --input_dir '$\"\\x40eaDir\"'",
        _STOP_SETTING + "; so does a '$' value that is not an expression the configs can evaluate ('$scans'); a "
        "'%' value is MONAI's macro, which it resolves before the bundle can check it. The monai-unets commands "
        "pass such paths as typed",
    ),
    Fault(
        "all bundles",
        "--input_dir=~/scans in a plain monai.bundle run (no shell expands the ~)",
        lambda r: _plain_run_line(SKIN, "--input_dir=~/scans"),
        "--input_dir ~/scans: '~' is not expanded here, and would be a folder of that name; give it as --input_dir",
        _STOP_SETTING + "; the monai-unets commands expand it",
    ),
    Fault(
        "training, inference, evaluation",
        'a path key without a path (`--output_dir "$OUT"` with OUT unset)',
        lambda r: _cli("infer", SKIN, "--workdir", str(r / "skin"), "--output_dir", "", "--dry-run"),
        "monai-unets: error: --output_dir needs a path.",
        "the command stops before anything is read or written; so does a plain monai.bundle run",
    ),
    Fault(
        "training (unetv2_polyp)",
        "--pretrained_encoder naming no file",
        lambda r: _setting("unetv2_polyp", "pretrained_encoder", str(r / "pvt_v2_b2.pth")),
        "pretrained_encoder must be the path of an existing local PVTv2 weights file (pvt_v2_b2.pth, from "
        "https://github.com/whai362/PVT), or None for a randomly initialised encoder",
        _STOP_SETTING,
    ),
    # --- weights and checkpoints
    Fault(
        "inference, evaluation",
        "the datalist's test list is empty (every case prepared for training)",
        lambda r: _empty_test_list(r),
        "datalist.json: the 'test' list is empty",
        "the run stops before the first case",
    ),
    Fault(
        "inference, evaluation",
        "model.pt missing",
        lambda r: _raised(lambda: load_weights(r / "model.pt", _tiny_network())),
        "model.pt: checkpoint does not exist; train the bundle first",
        "the run stops before the first case",
    ),
    Fault(
        "inference, evaluation",
        "model.pt truncated",
        lambda r: _raised(lambda: load_weights(_garbage(r, "model.pt", b"PK\x03\x04trunc"), _tiny_network())),
        "model.pt: not a readable PyTorch checkpoint",
        "the run stops before the first case",
    ),
    Fault(
        "inference, evaluation",
        "model.pt of another network (other keys)",
        lambda r: _raised(lambda: load_weights(_weights(r, {"encoder.weight": torch.ones(1)}), _tiny_network())),
        "does not fit the network Sequential: 4 missing keys (0.weight, 0.bias, 2.weight, ...); 1 unexpected keys "
        "(encoder.weight)",
        "the run stops before the first case",
    ),
    Fault(
        "inference, evaluation",
        "model.pt trained for another number of classes than --num_classes",
        lambda r: _raised(
            lambda: load_weights(
                _weights(r, {**_tiny_network().state_dict(), "2.weight": torch.ones(2, 4, 1, 1)}), _tiny_network()
            )
        ),
        "the weights were trained with num_classes 2, this run sets num_classes 1; run with --num_classes 2",
        "the run stops before the first case",
    ),
    Fault(
        "inference, evaluation (CT bundles)",
        "model.pt trained for other classes than the run's plan (without a plan beside it: the recipe's classes)",
        lambda r: _raised(
            lambda: load_weights(
                _weights(r, {**_tiny_network().state_dict(), "2.weight": torch.ones(2, 4, 1, 1)}),
                _tiny_network(),
                class_names=["pancreas", "tumour"],
            )
        ),
        "run with the plan they were trained with (plan.json beside them), or --num_classes 2 --class_names",
        "the run stops before the first case",
    ),
    Fault(
        "inference, evaluation",
        "model.pt with other shapes (trained with other widths, --network_def#channels)",
        lambda r: _raised(
            lambda: load_weights(
                _weights(r, {**_tiny_network().state_dict(), "0.weight": torch.ones(4, 3, 5, 5)}), _tiny_network()
            )
        ),
        "other shapes (0.weight (4, 3, 5, 5) instead of (4, 3, 3, 3)). It was saved from another network or other "
        "settings (spatial_dims, in_channels, out_channels, or the widths: a training given the network's "
        "arguments); run with the settings it was trained with",
        "the run stops before the first case",
    ),
    Fault(
        "inference, evaluation",
        "model.pt whose weights are NaN (a training that diverged elsewhere)",
        lambda r: _raised(
            lambda: load_weights(
                _weights(r, {**_tiny_network().state_dict(), "0.bias": torch.full((4,), float("nan"))}),
                _tiny_network(),
            )
        ),
        "model.pt: 4 of 117 weights are NaN or infinite (a training that diverged, or a damaged file)",
        "the run stops before the first case, where every label map had been empty",
    ),
    Fault(
        "inference, evaluation",
        "model.pt holds a tensor, not a state dict",
        lambda r: _raised(lambda: load_weights(_weights(r, torch.ones(3)), _tiny_network())),
        "holds a Tensor, not a state dict",
        "the run stops before the first case",
    ),
    Fault(
        "inference (runtime onnx)",
        "model.onnx exported from earlier weights (model.pt trained again since the export)",
        _onnx_of_earlier_weights,
        "model.onnx: exported from other weights than ",
        "the run stops at start, before any case is read; the message names the export command and --runtime torch",
    ),
    Fault(
        "inference, evaluation (CT bundles)",
        "an ensemble of cross-validation folds trained with different plans (the dataset planned again between folds)",
        _ensemble_of_other_plans,
        "differ in spacing ([1.5, 1.5, 2.0] against [2.0, 2.0, 2.5]): the models of an ensemble must be trained with "
        "one plan",
        "the run stops at start, before any study is read; the message names both plan files",
    ),
    Fault(
        "inference, evaluation (CT bundles)",
        "an ensemble listing a fold that was never trained (model_fold2.pt missing)",
        _ensemble_with_a_missing_fold,
        "model_fold2.pt: model file of the ensemble does not exist; train that fold first, or leave it out",
        "the run stops at start, before any study is read; it had been refused as a member of the default plan",
    ),
    Fault(
        "inference, evaluation (CT bundles)",
        "an ensemble listing one fold twice",
        _ensemble_listing_a_fold_twice,
        "model_fold0.pt: is listed twice; the ensemble would count that model twice: list each model once.",
        "the run stops at start, before any study is read; that fold had been averaged with twice the weight",
    ),
    Fault(
        "evaluation, inference",
        "a fold's models/plan_fold<k>.json copied from another fold",
        _plan_copied_from_another_fold,
        "plan_fold1.json records fold 0: it is that fold's plan, not fold 1's; put fold 1's own plan there",
        "the run stops at start, naming the plan file (plans written before plans recorded their fold are read)",
    ),
    Fault(
        "inference",
        "models/plan.json without its spacing (cut or edited by hand)",
        _plan_without_spacing,
        "has no 'spacing'; plan the dataset again with monai-unets plan",
        "the run stops at start, naming the plan file; the default recipe's spacing no longer stands in for the one "
        "the weights were trained at",
    ),
    Fault(
        "training",
        "checkpoint.pt of another configuration on resume",
        lambda r: _resume(r, {"trainer": {"epoch": 1, "iteration": 1}}),
        "has no model",
        "training stops at start",
    ),
    Fault(
        "training (unetv2_polyp)",
        "--pretrained_encoder file truncated or not a PyTorch file (a broken download)",
        lambda r: _raised(
            lambda: PVTv2Encoder.from_variant("pvt_v2_b0", pretrained=_garbage(r, "pvt_v2_b2.pth", b"PK\x03\x04trunc"))
        ),
        "pvt_v2_b2.pth: not a readable PyTorch checkpoint (RuntimeError); it is truncated, or not a file of tensors "
        "and numbers: download it again",
        "training stops at start",
    ),
    Fault(
        "training",
        "resumed with another --learning_rate or --weight_decay than checkpoint.pt was trained with",
        _resume_with_another_learning_rate,
        "checkpoint.pt: was trained with learning rate 0.001, this run sets 0.1",
        "training stops at start; the message names both values and --resume False",
    ),
    Fault(
        "training",
        "resumed with other preprocessing than checkpoint.pt was trained with (a CT bundle's --pixdim, "
        "--normalization or --foreground_threshold left out or changed, the dataset planned again)",
        _resume_with_another_spacing,
        "checkpoint.pt: was trained with spacing [1.2, 1.2, 3.0], this run sets [1.5, 1.5, 2.0]; resume with --pixdim",
        "training stops at start; the message names both values, the override and --ckpt_dir",
    ),
    Fault(
        "training",
        "checkpoint.pt truncated on resume",
        lambda r: _garbage(r, "checkpoint.pt", b"PK\x03") and _resume(r, None),
        "checkpoint.pt: not a readable PyTorch checkpoint",
        "training stops at start",
    ),
    Fault(
        "training",
        "re-run after SIGKILL: checkpoint of epoch 2 of 3",
        lambda r: _resume(r, {"model": _tiny_network().state_dict(), "trainer": {"epoch": 2, "iteration": 2}}),
        "epochs run: [3]",
        "training goes on after epoch 2",
    ),
    Fault(
        "training",
        "re-run of a finished training",
        lambda r: _resume(r, {"model": _tiny_network().state_dict(), "trainer": {"epoch": 3, "iteration": 3}}),
        "epochs run: []",
        "a warning says max_epochs is reached; raise --max_epochs or use --resume False",
    ),
    Fault(
        "training",
        "a resumed run validates worse than the best so far",
        _best_kept,
        "model.pt kept: ['marker']",
        "model.pt keeps the better weights",
    ),
    Fault(
        "training, inference",
        "disk full / kill while a checkpoint is written",
        _kill_mid_save,
        "model.pt still holds [1.0, 1.0]; other files: []",
        "the previous file stays whole; no temporary file left",
    ),
    Fault(
        "training",
        "every case of the training list is bad, with bad_case_policy skip",
        lambda r: _raised(
            lambda: __import__("monai_unets").data.check_cases(
                [[{"image": str(r / "a.nii"), "label": str(r / "b.nii")}]], [], "skip"
            )
        ),
        "every case of a list of 1 is bad; nothing to train on",
        "training stops at start",
    ),
    # --- inference (read stage; per-case isolation of the later stages is catalogued with failures.csv)
    Fault(
        "inference",
        "corrupt NIfTI among good inputs",
        lambda r: _inference_failure(r, CT, "bad.nii.gz", b"garbage"),
        "bad.nii.gz: ValueError: is not gzip-compressed, as its .gz says",
        _INFER,
    ),
    Fault(
        "inference",
        "a NIfTI cut off after its header among good inputs",
        lambda r: _inference_failure(r, CT, "cut.nii.gz", Path(_voxels_cut_off(r)).read_bytes()),
        "cut.nii.gz: ValueError: the image data is truncated: 48 of 8192 bytes (16 x 16 x 8 voxels of float32)",
        _INFER,
    ),
    Fault(
        "inference",
        "a JPEG cut short (an interrupted download) among good inputs",
        lambda r: _inference_failure(r, SKIN, "cut.jpg", _jpeg_bytes()[:1500]),
        "cut.jpg: OSError: cannot decode its pixel data (image file is truncated",
        _INFER,
    ),
    Fault(
        "inference",
        "a float TIFF with a no-data fill of +-3e38 among good inputs (its min-max scaling overflows)",
        lambda r: _inference_failure(r, SKIN, "filled.tiff", _filled_tiff_bytes()),
        "filled.tiff: DataCheckError: has values from -3e+38 to 3e+38, a range beyond float32's",
        _INFER,
    ),
    Fault(
        "inference",
        "zero-byte PNG among good inputs",
        lambda r: _inference_failure(r, SKIN, "empty.png", b""),
        "empty.png: UnidentifiedImageError: cannot identify the image file (not an image PIL reads)",
        _INFER,
    ),
    Fault(
        "inference",
        "input file deleted after listing",
        lambda r: _inference_failure(r, SKIN, "gone.png", None),
        "gone.png: FileNotFoundError",
        _INFER,
    ),
    Fault(
        "inference",
        "a DICOM file (or series) compressed in a syntax no installed decoder reads (HTJ2K without pylibjpeg)",
        lambda r: _inference_failure(r, CT, "htj2k.dcm", _htj2k_slice(r)),
        "htj2k.dcm: ValueError: cannot decode its pixel data (High-Throughput JPEG 2000",
        _INFER,
    ),
    Fault(
        "inference",
        "zero-byte DICOM file (.dcm) among good inputs",
        lambda r: _inference_failure(r, CT, "empty.dcm", b""),
        "empty.dcm: ValueError: is empty (0 bytes)",
        _INFER,
    ),
    Fault(
        "inference",
        "a single DICOM file whose pixel data is cut short (a lone slice or multi-frame file)",
        lambda r: _inference_failure(r, CT, "cut.dcm", min(_dicom_series(r).iterdir()).read_bytes()[:-10]),
        "cut.dcm is truncated: 502 of 512 bytes (16 x 16)",
        _INFER,
    ),
    Fault(
        "inference",
        "image truncated (half a .nrrd)",
        lambda r: _inference_failure(r, CT, "cut.nrrd", _sitk_bytes(r, "ct.nrrd", keep=0.5)),
        "fread got only 987 4-sized things, not 2048 (48.1934% of expected)",
        _INFER,
    ),
    Fault(
        "inference",
        "image truncated (half a .mha)",
        lambda r: _inference_failure(r, CT, "cut.mha", _sitk_bytes(r, "ct.mha", keep=0.5)),
        "is truncated: 3949 of 8192 bytes (16 x 16 x 8 voxels of MET_FLOAT)",
        _INFER,
    ),
    Fault(
        "inference",
        "a detached header (.nhdr, .mhd) whose data file is missing",
        _detached_headers,
        "lone.nhdr: FileNotFoundError: its data file ct.raw does not exist.; "
        "lone.mhd: FileNotFoundError: its data file ct.raw does not exist.",
        _INFER,
    ),
    Fault(
        "inference",
        "a 2D NIfTI among 3D studies",
        lambda r: _inference_failure(r, CT, "slice.nii.gz", _nifti_bytes(r, _V[..., 0])),
        "slice.nii.gz: DataCheckError: ",
        _INFER,
    ),
    Fault(
        "inference",
        "a 4D NIfTI (two volumes) among 3D studies",
        lambda r: _inference_failure(r, CT, "series.nii.gz", _nifti_bytes(r, np.stack([_V, _V], -1))),
        "has 2 channels",
        _INFER,
    ),
    Fault(
        "inference",
        "a NIfTI placed by its qform whose voxel size is 0 (pixdim[3] = 0) among 3D studies",
        lambda r: _inference_failure(r, CT, "flat.nii", _zero_slice_spacing_nifti()),
        "has a voxel size of 0 (pixdim[3] = 0) and no sform",
        _INFER,
    ),
    Fault(
        "inference",
        "a study with NaN voxels",
        lambda r: _inference_failure(r, CT, "nan.nii.gz", _nifti_bytes(r, _nan(_V, np.nan))),
        "has 3 NaN and 0 infinite voxels",
        _INFER,
    ),
    Fault(
        "inference",
        "a link in the input folder back to it (loop -> .)",
        lambda r: _listing_warning(r),
        "skipping 1 entry (links to this folder, a folder above it or a folder listed already)",
        "the link is not followed: each study is listed once",
    ),
    Fault(
        "inference",
        "an empty folder, or a Mac archive's __MACOSX/ of hidden ._ files, in the input folder",
        lambda r: _empty_folders_warning(r),
        "skipping 2 entries (folders without a file, hidden ones aside): __MACOSX, empty",
        "no failed case: the studies beside them are processed",
    ),
    Fault(
        "inference",
        "a DICOM SEG (an earlier run's) in the input folder and in a series folder; RT structure sets, doses and "
        "reports likewise",
        _seg_beside_its_series,
        "skipping 1 entry (DICOM objects that are no images): earlier_seg.dcm (Segmentation Storage)",
        "skipped with a warning that names them; the series is read without them",
    ),
    Fault(
        "inference",
        "the scouts (localizers) of a CT in its folder as a series of their own",
        _scouts_beside_their_series,
        "skipping localizer series <uid> in <root>/in/study: scout images, not volumes.",
        "the scout series is skipped with a warning; the CT series is the folder's one study",
    ),
    Fault(
        "inference",
        "a CT's dose report page or screenshots (secondary captures) in its folder as series of their own",
        _dose_page_beside_its_series,
        "skipping secondary capture series <uid> in <root>/in/study: screenshots or report pages, not volumes.",
        "the secondary capture series is skipped with a warning; the CT series is the folder's one study",
    ),
    Fault(
        "inference",
        "a DICOM series split over two folders (IMAGES/0001, IMAGES/0002), as CD writers store long series",
        _series_split_over_folders,
        "DICOM series <uid> has its slices in 2 folders: <root>/in/IMAGES/0001 (3 slices), <root>/in/IMAGES/0002 "
        "(3 slices); each folder alone is part of the volume.",
        "each folder is a failed case, unread (no label map of part of the volume); the other studies are processed",
    ),
    Fault(
        "inference",
        "an export's readme.txt (or another file whose suffix no DICOM file has) among a series' slices",
        _document_in_a_flat_export,
        "skipping <root>/in/study/readme.txt: not a DICOM file, as its name says.",
        "skipped with a warning; a file named as a slice may be (IM0017, 1.2.840...5, x.dcm) still fails its series",
    ),
    Fault(
        "inference",
        "input folder missing",
        lambda r: _raised(lambda: list_cases(r, input_dir=r / "none")),
        "none does not exist or is not a folder",
        "the run stops: nothing to process",
    ),
    Fault(
        "inference",
        "input folder without images",
        lambda r: (r / "in").mkdir() or _raised(lambda: list_cases(r, input_dir=r / "in")),
        "has no image file",
        "the run stops: nothing to process",
    ),
    # --- evaluation
    Fault(
        "evaluation",
        "label of another shape than its image",
        lambda r: _evaluation_failure(r, _volume(), _labels((16, 16, 6))),
        "label has spatial shape",
        _EVAL,
    ),
    Fault(
        "evaluation",
        "label value above the classes",
        lambda r: _evaluation_failure(r, _volume(), _labels(values=(0, 1, 7))),
        "label values 7 are not classes",
        _EVAL,
    ),
    Fault(
        "evaluation",
        "NaN voxels in an image",
        lambda r: _evaluation_failure(r, _nan(_V, np.nan), _labels()),
        "has 3 NaN and 0 infinite voxels",
        _EVAL,
    ),
    # --- the data tool
    Fault(
        "check-data",
        "a dataset with one bad case among good ones",
        lambda r: (
            _nifti(r / "a.nii.gz", _V),
            _nifti(r / "a_l.nii.gz", _labels()),
            _nifti(r / "b.nii.gz", _V),
            _nifti(r / "b_l.nii.gz", _labels(values=(0, 5, 1))),
            (r / "dataset.json").write_text(
                json.dumps(
                    {
                        "training": [
                            {"image": "a.nii.gz", "label": "a_l.nii.gz"},
                            {"image": "b.nii.gz", "label": "b_l.nii.gz"},
                        ]
                    }
                )
            ),
            _cli("check-data", "--bundle", CT, "--dataset-dir", str(r), "--set", "val_fraction=0.5"),
        )[-1],
        "1 of 2 cases are bad (listed above)",
        "one `BAD <file>: <problem>` line per bad case, a summary, exit 1",
    ),
    Fault(
        "check-data",
        "an unknown bundle name",
        lambda r: _cli("check-data", "--bundle", "nope", "--dataset-dir", str(r)),
        "no bundle named 'nope'",
        "exit status 1 with the list of bundles",
    ),
    Fault(
        "check-data",
        "a datalist with invalid JSON",
        lambda r: (r / "dataset.json").write_text("{") and _cli("check-data", "--bundle", CT, "--dataset-dir", str(r)),
        "dataset.json: datalist is not valid JSON",
        "exit status 1",
    ),
    Fault(
        "check-data",
        "`--set num_classes=abc` (a setting of the wrong type)",
        lambda r: _cli("check-data", "--bundle", SKIN, "--dataset-dir", str(r), "--set", "num_classes=abc"),
        "monai-unets: error: num_classes must be an integer >= 1, got 'abc'.",
        "exit status 1 before any data is read",
    ),
    # --- the other tools' options
    Fault(
        "demo-ct, demo-mr",
        "`--spacing 0 1 1` (or nan, inf)",
        lambda r: _cli("demo-ct", "--output-dir", str(r / "out"), "--spacing", "0", "1", "1"),
        "error: argument --spacing: must be a number > 0, got '0'",
        "usage error (exit status 2), nothing written",
    ),
    Fault(
        "demo-ct, demo-mr",
        "`--num-cases 0`, `--num-test -1` or `--shape 0 0 0`",
        lambda r: _cli("demo-mr", "--output-dir", str(r / "out"), "--num-cases", "0"),
        "error: argument --num-cases: must be an integer >= 1, got '0'",
        "usage error (exit status 2), nothing written",
    ),
    Fault(
        "demo-data",
        "`--num-images 2`, `--min-size 16`, or a `--max-size` not above `--min-size`",
        lambda r: _cli("demo-data", "--output-dir", str(r / "out"), "--num-images", "2"),
        "error: argument --num-images: must be an integer >= 3, got '2'",
        "usage error (exit status 2), nothing written",
    ),
    Fault(
        "demo-data, prepare-isic, prepare-polyp",
        "`--train-fraction 2` or a `--val-fraction` outside [0, 1)",
        lambda r: _cli("demo-data", "--output-dir", str(r / "out"), "--train-fraction", "2"),
        "error: argument --train-fraction: must be a number > 0 and < 1, got '2'",
        "usage error (exit status 2), nothing written",
    ),
    Fault(
        "quickstart",
        "`--epochs 0` (or --batch-size, --val-interval 0, --num-images 2, a --device the machine does not have, an "
        "empty --output-dir)",
        lambda r: _cli("quickstart", "--output-dir", str(r / "out"), "--epochs", "0"),
        "error: argument --epochs: must be an integer >= 1, got '0'",
        "usage error (exit status 2), before the demo data is made; an --output-dir that is a file: one line, exit "
        "status 1",
    ),
    Fault(
        "plan",
        "`--device nosuchdevice`, or a CUDA device the machine does not have",
        lambda r: _cli("plan", "--dataset-dir", str(r), "--device", "nosuchdevice"),
        "error: argument --device: 'nosuchdevice' is not a device; give e.g. cpu, cuda or cuda:1",
        "usage error (exit status 2), before the dataset is read",
    ),
    Fault(
        "served inference (MONAI Label, CT bundles)",
        'a request\'s tta option given as the string "false"',
        lambda r: _raised(lambda: _component(CT, "inferer", ("inference.yaml",), displayable_configs={"tta": "false"})),
        "tta must be True or False, got 'false'.",
        "that request fails, naming the option (the string would have turned test-time augmentation on); the next "
        "requests are served",
    ),
]


@pytest.mark.parametrize("fault", CATALOGUE, ids=lambda f: f"{f.area.split(',')[0]}: {f.fault}")
def test_fault(fault: Fault, tmp_path):
    seen = fault.trigger(tmp_path)
    assert fault.expect in seen, seen


def test_a_failing_bundle_run_ends_with_one_line_and_logs_the_traceback(tmp_path):
    seen = _bundle_run(tmp_path, SKIN, "train.yaml", "--max_epochs", "abc")
    assert "exit 1; last line: ERROR: max_epochs must be an integer >= 1, got 'abc'." in seen
    assert seen.endswith("traceback in logs/error.log: True")


def test_the_catalogue_covers_every_area_with_fifty_kinds():
    areas = " ".join(f.area for f in CATALOGUE)
    assert len(CATALOGUE) >= 50
    assert all(a in areas for a in ("training", "inference", "evaluation", "check-data"))


def render() -> str:
    """The failure catalogue as Markdown."""
    lines = [
        "# Failure catalogue",
        "",
        "Every bad input and fault tried on the bundles and tools, and what the user sees. Each row is a test",
        "(`tests/test_failure_catalogue.py`); this page is generated from it with",
        "`python tests/test_failure_catalogue.py`. Paths are shown as `<file>`.",
        "",
        "| # | Where | Bad input or fault | The user sees | Then |",
        "|---|---|---|---|---|",
    ]
    for number, f in enumerate(CATALOGUE, 1):
        lines.append(f"| {number} | {f.area} | {f.fault} | `{f.expect.strip()}` | {f.outcome} |")
    lines.append("")
    return "\n".join(lines)


def test_the_catalogue_page_is_current():
    assert DOC.read_text() == render(), "regenerate with: python tests/test_failure_catalogue.py"


if __name__ == "__main__":
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(render())
    print(f"{DOC}: {len(CATALOGUE)} kinds")
