from __future__ import annotations

import threading

import pytest
from monai.transforms import Compose
from monai_unets.data.cases import failure_stage
from monai_unets.transforms import ConcurrentCompose


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
