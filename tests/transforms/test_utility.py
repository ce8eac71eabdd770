from __future__ import annotations

import threading

import pytest
import torch
from monai.data import MetaTensor, get_track_meta
from monai.transforms import Compose, RandFlipd, RandomizableTransform, RandRotated, ScaleIntensityd, Transform
from monai_unets.data.cases import failure_stage
from monai_unets.transforms import ConcurrentCompose, MetaFreeRandomCompose


class _Writer:
    """A writer stand-in: optionally waits at ``barrier`` (passed only by two calls at the same time)."""

    def __init__(self, log: list, barrier: threading.Barrier | None = None, fail: bool = False) -> None:
        self.log, self.barrier, self.fail = log, barrier, fail

    def __call__(self, data):
        if self.barrier is not None:
            self.barrier.wait(timeout=10)
        self.log.append((type(self).__name__, data["pred"]))
        if self.fail:
            raise OSError(f"{type(self).__name__}: disk full")
        return {**data, "pred": "changed by a writer"}


class SaveNifti(_Writer):
    pass


class SaveSeg(_Writer):
    pass


class SaveSegWithOptions(SaveSeg):
    pass


class Step:
    def __init__(self, log: list, value: str) -> None:
        self.log, self.value = log, value

    def __call__(self, data):
        self.log.append(("Step", data["pred"]))
        return {**data, "pred": self.value}


def test_consecutive_writers_run_side_by_side_and_the_chain_goes_on_in_order():
    log: list = []
    barrier = threading.Barrier(2)
    chain = ConcurrentCompose(
        [Step(log, "label map"), SaveNifti(log, barrier), SaveSegWithOptions(log, barrier), Step(log, "squeezed")],
        concurrent=["SaveNifti", "SaveSeg"],
    )
    out = chain({"pred": "scores"})
    # the writers saw the label map and their return values were dropped; the last step saw it too
    assert out == {"pred": "squeezed"}
    assert log[0] == ("Step", "scores") and log[-1] == ("Step", "label map")
    assert sorted(log[1:3]) == [("SaveNifti", "label map"), ("SaveSegWithOptions", "label map")]
    # a flat chain: tools that take the steps apart (MONAI Label drops SaveImaged) see every step
    assert [type(t).__name__ for t in chain.transforms] == ["Step", "SaveNifti", "SaveSegWithOptions", "Step"]


def test_other_transforms_run_one_after_the_other():
    log: list = []
    chain = ConcurrentCompose([SaveNifti(log), SaveSeg(log)], concurrent=["SaveNifti"])
    chain({"pred": "label map"})
    # not side by side: the second writer sees what the first returned, as in Compose
    assert log == [("SaveNifti", "label map"), ("SaveSeg", "changed by a writer")]
    assert Compose([SaveNifti([]), SaveSeg([])])({"pred": "x"}) == ConcurrentCompose([SaveNifti([]), SaveSeg([])])(
        {"pred": "x"}
    )


def test_a_failure_lets_the_other_writers_finish_and_names_the_transform():
    log: list = []
    chain = ConcurrentCompose([SaveNifti(log, fail=True), SaveSeg(log)], concurrent=["SaveNifti", "SaveSeg"])
    with pytest.raises(RuntimeError) as raised:
        chain({"pred": "label map"})
    assert ("SaveSeg", "label map") in log
    assert isinstance(raised.value.__cause__, OSError)
    assert failure_stage(raised.value, "postprocessing") == "writing (SaveNifti)"


def test_of_two_failures_the_first_in_the_chain_is_raised():
    chain = ConcurrentCompose([SaveNifti([], fail=True), SaveSeg([], fail=True)], concurrent=["SaveNifti", "SaveSeg"])
    with pytest.raises(RuntimeError) as raised:
        chain({"pred": "label map"})
    assert "SaveNifti: disk full" in str(raised.value.__cause__)


class SaveSegReadingAhead(SaveSeg):
    def prepare(self, data):
        self.log.append(("prepare", data["pred"], threading.current_thread().name))


class StepReadingAhead(Step):
    def prepare(self, data):  # not a writer of the run: never asked to read ahead
        self.log.append(("prepare of a step", data["pred"]))


def test_a_writer_may_start_its_work_as_the_chain_starts():
    log: list = []
    chain = ConcurrentCompose(
        [StepReadingAhead(log, "label map"), SaveNifti(log), SaveSegReadingAhead(log)],
        concurrent=["SaveNifti", "SaveSeg"],
    )
    chain({"pred": "scores"})
    # the writer's prepare saw the case as it entered the chain, before the first step ran
    assert log[:2] == [("prepare", "scores", threading.current_thread().name), ("Step", "scores")]
    assert sorted(log[2:]) == [("SaveNifti", "label map"), ("SaveSegReadingAhead", "label map")]


class _Probe(Transform):
    """Records the type of ``image`` and MONAI's metadata switch as it sees them."""

    def __init__(self, seen: list) -> None:
        self.seen = seen

    def __call__(self, data):
        self.seen.append((type(data["image"]).__name__, get_track_meta()))
        return data


class _RandomProbe(_Probe, RandomizableTransform):
    def __init__(self, seen: list, fail: bool = False) -> None:
        _Probe.__init__(self, seen)
        RandomizableTransform.__init__(self, prob=1.0)
        self.fail = fail

    def __call__(self, data):
        super().__call__(data)
        if self.fail:
            raise RuntimeError("augmentation failed")
        return data


def _image():
    return {"image": MetaTensor(torch.arange(64.0).reshape(1, 8, 8)), "name": "a"}


def test_meta_free_random_compose_runs_only_the_random_tail_without_metadata():
    seen: list = []
    chain = MetaFreeRandomCompose([_Probe(seen), RandFlipd("image", prob=1.0, spatial_axis=0), _Probe(seen)])
    out = chain(_image())
    assert seen == [("MetaTensor", True), ("Tensor", False)]
    assert type(out["image"]) is torch.Tensor and out["name"] == "a"
    assert get_track_meta()
    # as a caching dataset calls it: the cached head alone, then the tail from the first random transform
    seen.clear()
    head = chain(_image(), end=1)
    assert isinstance(head["image"], MetaTensor)
    assert type(chain(head, start=1)["image"]) is torch.Tensor
    assert seen == [("MetaTensor", True), ("Tensor", False)]


def test_meta_free_random_compose_draws_the_same_samples_as_compose():
    def chain(cls):
        composed = cls(
            [
                ScaleIntensityd("image"),
                RandFlipd("image", prob=0.5, spatial_axis=1),
                RandRotated("image", range_x=0.5, prob=0.5, mode="bilinear"),
            ]
        )
        return composed.set_random_state(seed=7)

    plain, with_meta = chain(MetaFreeRandomCompose), chain(Compose)
    for _ in range(6):
        assert torch.equal(plain(_image())["image"], with_meta(_image())["image"].as_tensor())


def test_meta_free_random_compose_turns_metadata_back_on_after_a_failure():
    chain = MetaFreeRandomCompose([_RandomProbe([], fail=True)])
    with pytest.raises(RuntimeError, match="applying transform") as error:
        chain(_image())
    assert str(error.value.__cause__) == "augmentation failed"
    assert get_track_meta()


def test_meta_free_random_compose_keeps_metadata_outside_the_main_thread_and_when_lazy():
    # the switch is one per process: a chain in a ThreadDataLoader's thread had turned it off for the transforms of
    # the other threads (a reader's affine lost, a resampling skipped, without an error); and lazy resampling needs
    # the metadata of its random transforms (it had failed on a bare MetaObj)
    seen: list = []
    chain = MetaFreeRandomCompose([_Probe(seen), RandFlipd("image", prob=1.0, spatial_axis=0), _Probe(seen)])
    outputs: list = []
    worker = threading.Thread(target=lambda: outputs.append(chain(_image())))
    worker.start()
    worker.join()
    assert seen == [("MetaTensor", True), ("MetaTensor", True)] and isinstance(outputs[0]["image"], MetaTensor)
    lazy = MetaFreeRandomCompose([ScaleIntensityd("image"), RandRotated("image", range_x=0.5, prob=1.0)], lazy=True)
    reference = Compose([ScaleIntensityd("image"), RandRotated("image", range_x=0.5, prob=1.0)], lazy=True)
    torch.testing.assert_close(
        lazy.set_random_state(seed=3)(_image())["image"], reference.set_random_state(seed=3)(_image())["image"]
    )
