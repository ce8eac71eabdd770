from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest
import torch
from monai.data import CacheDataset, DataLoader, Dataset, MetaTensor, PersistentDataset
from monai.transforms import (
    Compose,
    EnsureChannelFirstd,
    Invertd,
    Lambdad,
    LoadImaged,
    RandFlipd,
    Resized,
    SaveImage,
    Transform,
)
from monai_unets.data import (
    CASE_INDEX_KEY,
    CASE_NAME_KEY,
    FAILURE_KEY,
    AtomicNibabelWriter,
    CaseDataset,
    cached_dataset,
    case_output_name,
    case_output_names,
    failure_stage,
    gather_items,
    shard_items,
)
from PIL import Image

from tests.distributed import run_in_two_processes


def test_inputs_of_different_kinds_with_one_stem_get_distinct_names(tmp_path, caplog):
    (tmp_path / "x").mkdir()
    sources = [tmp_path / "a.jpg", tmp_path / "a.png", tmp_path / "b.png", tmp_path / "x.nii.gz", tmp_path / "x"]
    with caplog.at_level(logging.WARNING):
        names = case_output_names(sources)
    assert names == ["a_jpg", "a_png", "b", "x_nii_gz", "x_dicom"]
    assert "a.jpg -> a_jpg" in caplog.text


def test_one_file_name_in_several_folders_takes_the_folder_names():
    names = case_output_names(["/d/p1/image.nii.gz", "/d/p2/image.nii.gz", "/d/p3/other.nii.gz"])
    assert names == ["p1_image", "p2_image", "other"]


def test_a_case_id_names_its_case_and_stays_unique():
    # nnU-Net's cases: <case>_0000.nii.gz named <case>; an id shared with another case's file name is told apart
    sources = ["/d/imagesTs/la_003_0000.nii.gz", "/d/imagesTs/la_004_0000.nii.gz", "/e/la_003.nii.gz"]
    names = case_output_names(sources, ["la_003", "la_004", None])
    assert names[1] == "la_004" and len({n.casefold() for n in names}) == 3
    assert names[0].endswith("la_003") and names[2].endswith("la_003")


def test_names_are_unique_without_regard_to_case_and_for_repeated_files():
    names = case_output_names(["/d/A.png", "/e/a.png", "/d/b.png", "/d/b.png"])
    assert len({n.casefold() for n in names}) == 4
    assert names[:2] == ["d_A", "e_a"]


def test_names_are_unique_without_regard_to_the_unicode_form_of_their_letters():
    # café.jpg written once precomposed and once with a combining accent: two files here, one on a macOS volume,
    # where one mask had silently replaced the other
    import unicodedata

    composed, decomposed = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")
    names = case_output_names([f"/d/{composed}.jpg", f"/d/{decomposed}.jpg"])
    assert len({unicodedata.normalize("NFC", n).casefold() for n in names}) == 2


def test_series_of_one_folder_are_named_by_uid_and_unsafe_characters_replaced():
    names = case_output_names(["/in/study::1.2.3", "/in/study::1.2.4", "/in/we:ird*.nii.gz"])
    assert names == ["study_1.2.3", "study_1.2.4", "we_ird_"]
    # a right-to-left override shows "rlo\u202egpj.exe" as "rloexe.jpg": kept, the output had looked like another
    assert case_output_names(["/in/rlo\u202egpj.exe.png", "/in/c\x9b2J.png"]) == ["rlo_gpj.exe", "c_2J"]


def test_the_warning_says_why_each_input_was_renamed(caplog):
    sources = ["/in/tab\there.png", "/in/a.jpg", "/in/a.png", f"/in/{'L' * 250}.png"]
    with caplog.at_level(logging.WARNING):
        names = case_output_names(sources)
    renamed = dict(entry.split(" -> ") for entry in caplog.text.strip().split(": ", 1)[1].split("; "))
    assert renamed["/in/tab\there.png"] == (
        "tab_here (it had characters that file systems refuse, or control characters)"
    )
    assert renamed["/in/a.jpg"] == "a_jpg (it had the output name of another input)"
    assert renamed[sources[3]] == f"{names[3]} (it had a name too long for the file system)"


def test_the_warning_of_many_renamed_inputs_names_a_few(caplog):
    sources = [f"/in/{i:04d}.{suffix}" for i in range(1500) for suffix in ("jpg", "png")]
    with caplog.at_level(logging.WARNING):
        case_output_names(sources)
    # every one had been listed: a line of 100 KB
    assert len(caplog.text) < 1000
    assert caplog.text.rstrip().endswith("; and 2995 more")
    assert "3000 input(s) are written under another name" in caplog.text


def test_shards_are_disjoint_ordered_and_cover_everything():
    items = list(range(7))
    shards = [shard_items(items, rank, 3) for rank in range(3)]
    assert sum(shards, []) == items
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    with pytest.raises(ValueError, match="rank 3"):
        shard_items(items, 3, 3)


def test_saved_file_is_named_after_the_whole_case_name(tmp_path):
    image = MetaTensor(torch.zeros(1, 4, 5, 3), meta={"filename_or_obj": "/in/study", CASE_NAME_KEY: "study_1.2.3"})
    saver = SaveImage(tmp_path, output_postfix="seg", separate_folder=False, output_name_formatter=case_output_name)
    saver(image)
    assert [p.name for p in tmp_path.iterdir()] == ["study_1.2.3_seg.nii.gz"]


def test_names_too_long_for_the_file_system_are_shortened_uniquely_and_the_same_each_time(tmp_path):
    # 252 to 255 bytes are legal input names, too long once "_seg.png" is added; "é" is two bytes
    sources = [f"/in/{'L' * 248}.png", f"/in/{'L' * 248}.jpg", f"/in/{'L' * 251}.png", f"/in/{'é' * 125}.png"]
    names = case_output_names(sources)
    assert names == case_output_names(sources)
    assert len({n.casefold() for n in names}) == 4
    assert all(200 < len(n.encode()) <= 223 for n in names)
    assert names[3].startswith("é" * 100)
    for name in names:
        image = MetaTensor(torch.zeros(1, 4, 5), meta={"filename_or_obj": "/in/x.png", CASE_NAME_KEY: name})
        saver = SaveImage(
            tmp_path,
            output_postfix="uncertainty",
            output_ext=".nii.gz",
            separate_folder=False,
            output_name_formatter=case_output_name,
            writer=AtomicNibabelWriter,
        )
        saver(image)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{n}_uncertainty.nii.gz" for n in names)


def _png(path, value=100, size=(6, 8)):
    Image.fromarray(np.full(size, value, dtype=np.uint8)).save(path)
    return str(path)


def test_case_dataset_names_its_items_and_turns_failures_into_records(tmp_path):
    good = _png(tmp_path / "a.png")
    corrupt = tmp_path / "a.jpg"
    corrupt.write_bytes(b"not an image")
    load = Compose(
        [
            LoadImaged("image", reader="PILReader", image_only=True),
            EnsureChannelFirstd("image", channel_dim="no_channel"),
        ]
    )
    transform = Compose([load, Lambdad("image", func=lambda image: image.reshape(-1, 5))])  # 48 pixels
    ds = CaseDataset([{"image": good}, {"image": str(corrupt)}], load)
    assert len(ds) == 2
    assert ds[0]["image"].meta[CASE_NAME_KEY] == "a_png" and ds[0]["image"].meta[CASE_INDEX_KEY] == 0
    assert ds[1][FAILURE_KEY] == {
        "case": "a_jpg",
        "file": str(corrupt),
        "stage": "reading",
        "error": ds[1][FAILURE_KEY]["error"],
        "index": 1,
    }
    assert "cannot identify image file" in ds[1][FAILURE_KEY]["error"]
    assert CaseDataset([{"image": good}], transform)[0][FAILURE_KEY]["stage"] == "preprocessing (Lambdad)"


def test_a_case_of_one_file_per_channel_is_named_after_its_first_and_fails_naming_the_file_at_fault(tmp_path):
    import nibabel as nib
    from monai_unets.data import CheckCased

    volume = np.zeros((6, 6, 4), np.float32)
    nan = volume.copy()
    nan[0, 0, 0] = np.nan
    cases = []
    for patient in ("p1", "p2"):
        (tmp_path / patient).mkdir()
        files = [str(tmp_path / patient / f"{channel}.nii.gz") for channel in ("t1", "t2")]
        nib.save(nib.Nifti1Image(volume, np.eye(4)), files[0])
        nib.save(nib.Nifti1Image(nan if patient == "p2" else volume, np.eye(4)), files[1])
        cases.append({"image": files})
    load = Compose([LoadImaged("image", image_only=True), EnsureChannelFirstd("image"), CheckCased("image", 3, 2)])
    ds = CaseDataset(cases, load)
    # the names had been made of the list's text: "p1_t1.nii.gz', '_x_p1_t2.nii"
    assert ds.names == ["p1_t1", "p2_t1"]
    assert ds[0]["image"].shape == (2, 6, 6, 4)
    failure = ds[1][FAILURE_KEY]
    assert failure["file"] == cases[1]["image"][1] and "1 NaN" in failure["error"]


def test_failure_stage_names_writers_and_plain_errors():
    def failed_in(transform: str) -> RuntimeError:
        inner = RuntimeError(f"applying transform <monai.transforms.io.dictionary.{transform} object at 0x1>")
        inner.__cause__ = OSError(28, "No space left on device")
        outer = RuntimeError("applying transform <monai.transforms.compose.Compose object at 0x2>")
        outer.__cause__ = inner
        return outer

    assert failure_stage(failed_in("SaveImaged"), "postprocessing") == "writing (SaveImaged)"
    assert failure_stage(failed_in("LoadImaged"), "preprocessing") == "reading"
    assert failure_stage(failed_in("Invertd"), "postprocessing") == "postprocessing (Invertd)"
    assert failure_stage(ValueError("x"), "inference") == "inference"


def test_cache_modes(tmp_path):
    data = [{"image": _png(tmp_path / "a.png")}]
    load = LoadImaged("image", reader="PILReader", image_only=True)
    assert type(cached_dataset(data, load, "none")) is Dataset
    assert isinstance(cached_dataset(data, load, "memory", num_workers=0), CacheDataset)
    disk = cached_dataset(data, load, "disk", cache_dir=tmp_path / "cache")
    assert isinstance(disk, PersistentDataset)
    disk[0]
    assert list((tmp_path / "cache").glob("*.pt"))
    with pytest.raises(ValueError, match="cache must be one of"):
        cached_dataset(data, load, "ram")
    with pytest.raises(ValueError, match="cache_dir"):
        cached_dataset(data, load, "disk")


@pytest.mark.parametrize("cache", ["none", "memory", "disk"])
def test_random_meta_off_gives_the_same_samples_as_plain_tensors(tmp_path, cache):
    paths = [_png(tmp_path / f"{i}.png", value=i, size=(6, 8)) for i in range(4)]
    for i, path in enumerate(paths):
        # a different pattern per image, so that a flip shows
        Image.fromarray(np.arange(48, dtype=np.uint8).reshape(6, 8) * (i + 1)).save(path)
    # nested lists as the bundles write them: the head is still cached, and reads the files with metadata
    head = Compose([LoadImaged("image", reader="PILReader", image_only=True), EnsureChannelFirstd("image")])
    seen = []
    transform = Compose(
        [head, Lambdad("image", lambda x: seen.append(type(x)) or x), RandFlipd("image", prob=0.5, spatial_axis=0)]
    )
    batches = {}
    for mode, random_meta in ((cache, True), (cache, False), ("memory", True)):
        cases = [{"image": p} for p in paths]
        data = cached_dataset(cases, transform, mode, tmp_path / f"cache_{random_meta}", 0, random_meta=random_meta)
        loader = DataLoader(data, batch_size=4, generator=torch.Generator().manual_seed(5))
        batches[mode, random_meta] = next(iter(loader))["image"]
    assert isinstance(batches[cache, True], MetaTensor) and type(batches[cache, False]) is torch.Tensor
    # the same samples with and without metadata, and in every cache mode
    assert torch.equal(batches[cache, True].as_tensor(), batches[cache, False])
    assert torch.equal(batches["memory", True].as_tensor(), batches[cache, False])
    assert set(seen) == {MetaTensor}


def _disk_cached_png(tmp_path, path, size=(4, 4)):
    load = Compose(
        [
            LoadImaged("image", reader="PILReader", image_only=True),
            EnsureChannelFirstd("image"),
            Resized("image", size),
        ]
    )
    # a new dataset each time, as a later run makes: its items come from the cache files
    return cached_dataset([{"image": path}], load, "disk", cache_dir=tmp_path / "cache")[0], load


def test_disk_cache_read_back_keeps_metadata_and_operations(tmp_path):
    path = _png(tmp_path / "a.png", size=(6, 8))
    _disk_cached_png(tmp_path, path)
    item, load = _disk_cached_png(tmp_path, path)
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 1
    image = item["image"]
    assert isinstance(image, MetaTensor) and image.meta["filename_or_obj"] == path
    # evaluation inverts the preprocessing from the cached item's record of it
    restored = Invertd("image", load, orig_keys="image")(item)["image"]
    assert tuple(restored.shape) == (1, 8, 6)


def test_disk_cache_entries_of_other_preprocessing_settings_are_not_read(tmp_path):
    path = _png(tmp_path / "a.png", size=(6, 8))
    assert _disk_cached_png(tmp_path, path, size=(4, 4))[0]["image"].shape[1:] == (4, 4)
    # the transforms' class names alone had keyed the entries: another image size read the earlier one's
    assert _disk_cached_png(tmp_path, path, size=(5, 3))[0]["image"].shape[1:] == (5, 3)
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 2


def test_disk_cache_reads_a_file_corrected_in_place_again(tmp_path):
    path = _png(tmp_path / "mask.png", value=10)
    assert float(_disk_cached_png(tmp_path, path)[0]["image"].max()) == 10
    _png(tmp_path / "mask.png", value=200)
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    assert float(_disk_cached_png(tmp_path, path)[0]["image"].max()) == 200


def test_disk_cache_keys_cases_given_as_arrays_by_all_their_values(tmp_path):
    # keyed by their printed form, which shows only an array's corners, two images that differ in the middle had
    # shared one entry: the second case read the first one's image
    plain, lesion = np.zeros((1, 64, 64), np.float32), np.zeros((1, 64, 64), np.float32)
    lesion[0, 20:40, 20:40] = 1.0
    cases = [{"image": plain}, {"image": lesion}]
    dataset = cached_dataset(cases, Compose([Lambdad("image", torch.as_tensor)]), "disk", cache_dir=tmp_path / "cache")
    assert float(dataset[0]["image"].sum()) == 0.0 and float(dataset[1]["image"].sum()) == 400.0


def test_disk_cache_keys_the_preprocessing_by_deep_settings_and_function_bodies(tmp_path):
    # a reader's settings nine levels inside LoadImaged, and a lambda's body, had been left out of the key
    from monai_unets.data.cases import _transforms_digest
    from monai_unets.data.medical_io import MedicalImageReader

    def load(canonical: bool) -> LoadImaged:
        reader = MedicalImageReader(nibabel_kwargs={"as_closest_canonical": canonical})
        return LoadImaged("image", reader=reader, image_only=True)

    assert _transforms_digest([load(False)]) != _transforms_digest([load(True)])
    assert _transforms_digest([load(True)]) == _transforms_digest([load(True)])
    add, double = Lambdad("image", lambda x: x + 1), Lambdad("image", lambda x: x * 2)
    assert _transforms_digest([add]) != _transforms_digest([double])
    offset = 1
    closure = Lambdad("image", lambda x: x + offset)
    first = _transforms_digest([closure])
    offset = 2
    assert _transforms_digest([closure]) != first


class _CountingLoad(Transform):
    """A deterministic step that counts its calls (how often a case is read)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, data: dict) -> dict:
        self.calls += 1
        return {**data, "image": torch.full((1, 4, 4), float(data["value"]))}


@pytest.mark.parametrize("cache", ["memory", "disk"])
def test_cache_keeps_the_deterministic_head_of_nested_compose_lists(tmp_path, cache):
    """A bundle's preprocessing is a Compose of named Compose lists, then random transforms: each case is read once."""
    load = _CountingLoad()
    transform = Compose([Compose([load]), Compose([Lambdad("image", lambda x: x * 2)]), RandFlipd("image", prob=0.5)])
    data = [{"value": v} for v in range(3)]
    dataset = cached_dataset(data, transform, cache, cache_dir=tmp_path / "cache", num_workers=0)
    for _ in range(3):
        values = sorted(float(dataset[i]["image"].max()) for i in range(len(data)))
    assert values == [0.0, 2.0, 4.0]
    assert load.calls == len(data)


def _gather(rank: int, results: str) -> None:
    # rank 0 without items: the job's items are rank 1's alone
    gathered = [gather_items([] if rank == 0 else ["b.png", "c.png"]), gather_items([{"case": rank}])]
    with open(f"{results}.{rank}", "w") as f:
        json.dump(gathered, f)


def test_items_of_every_process_are_gathered_rank_by_rank(tmp_path):
    assert gather_items(("a.png",)) == ["a.png"]  # one process: its own items
    run_in_two_processes(_gather, str(tmp_path / "gathered"))
    for rank in (0, 1):
        gathered = json.loads((tmp_path / f"gathered.{rank}").read_text())
        assert gathered == [["b.png", "c.png"], [{"case": 0}, {"case": 1}]]


def test_the_examples_of_the_module_run(tmp_path, monkeypatch):
    # `python -m pytest --doctest-modules data/cases.py` failed: case_output_paths' example used names it had not
    # imported
    import doctest

    from monai_unets.data import cases

    monkeypatch.chdir(tmp_path)
    assert doctest.testmod(cases, verbose=False, report=False).failed == 0
