from __future__ import annotations

import json
from types import SimpleNamespace

import torch
from monai.data import MetaTensor
from monai_unets.handlers import PostprocessingSelector, choose_keep_largest

from tests.distributed import run_in_two_processes


def _onehot(labels: torch.Tensor, classes: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(labels, classes).permute(3, 0, 1, 2).float()


def test_keeps_the_largest_component_only_where_validation_dice_rises(tmp_path):
    label = torch.zeros(10, 10, 4, dtype=torch.int64)
    label[:4, :4] = 1  # one organ
    label[6:, :2] = 2  # a class with two true islands
    label[6:, 8:] = 2
    pred = label.clone()
    pred[8:, 4:6, :1] = 1  # a spurious island of class 1: removing it helps
    plan_file = tmp_path / "plan.json"
    selector = PostprocessingSelector(plan_file)
    engine = SimpleNamespace(state=SimpleNamespace(output=[{"pred": _onehot(pred, 3), "label": _onehot(label, 3)}]))
    selector.reset()
    selector.collect(engine)
    engine.state.epoch, engine.state.best_metric_epoch = 3, 2  # not a new best: nothing written
    selector.decide(engine)
    assert not plan_file.exists()
    engine.state.best_metric_epoch = 3
    selector.decide(engine)
    assert json.loads(plan_file.read_text())["postprocessing"] == {"keep_largest": [1]}


def test_a_collated_output_is_scored_case_by_case(tmp_path):
    # an evaluator built with decollate=False holds one dictionary of batched tensors: its batch axis had been taken
    # for the classes, and the keep-largest choice made from the wrong values
    label = torch.zeros(2, 10, 10, 4, dtype=torch.int64)
    label[:, :4, :4] = 1
    pred = label.clone()
    pred[:, 8:, 4:6, :1] = 1  # a spurious island in both cases: removing it helps
    onehot = [_onehot(p, 2) for p in pred], [_onehot(t, 2) for t in label]
    decollated, collated = PostprocessingSelector(tmp_path / "a.json"), PostprocessingSelector(tmp_path / "b.json")
    decollated.collect(
        SimpleNamespace(state=SimpleNamespace(output=[{"pred": p, "label": t} for p, t in zip(*onehot)]))
    )
    # MONAI's collation marks a batch's MetaTensors, and the network's output keeps the mark
    batched = {"pred": MetaTensor(torch.stack(onehot[0])), "label": MetaTensor(torch.stack(onehot[1]))}
    batched["pred"].is_batch = batched["label"].is_batch = True
    collated.collect(SimpleNamespace(state=SimpleNamespace(output=batched)))
    assert collated.plain == decollated.plain and collated.largest == decollated.largest
    assert len(collated.plain) == 2 and collated.largest == [[1.0], [1.0]]


def test_choice_ignores_classes_absent_everywhere():
    nan = float("nan")
    assert choose_keep_largest([[0.5, nan], [0.7, nan]], [[0.6, nan], [0.7, nan]], [1, 2]) == [1]
    assert choose_keep_largest([[0.5, 0.9]], [[0.5, 0.8]], [1, 2]) == []


def test_the_training_plan_is_written_with_the_weights_and_only_then(tmp_path):
    from ignite.engine import Engine
    from monai_unets.data import DEFAULT_PLAN
    from monai_unets.handlers import BestModelSaver

    plan_file = tmp_path / "models" / "plan.json"
    kept = {**DEFAULT_PLAN, "spacing": [2.0, 2.0, 2.0], "postprocessing": {"keep_largest": [1]}}
    plan_file.parent.mkdir()
    plan_file.write_text(json.dumps(kept))
    plan = {**DEFAULT_PLAN, "spacing": [1.0, 1.0, 1.0], "postprocessing": {"keep_largest": [2]}}
    network = torch.nn.Linear(2, 1)
    saver = BestModelSaver(
        tmp_path / "models" / "model.pt", network, metric_name="dice", plan=plan, plan_file=plan_file
    )
    validator = Engine(lambda e, b: None)
    saver.attach(validator)
    PostprocessingSelector(plan_file).attach(validator)
    # a rerun of a finished training validates nothing and writes no weights: the plan of the weights stays
    assert json.loads(plan_file.read_text()) == kept
    validator.state.metrics, validator.state.epoch = {"dice": 0.5}, 1
    saver(validator)
    written = json.loads(plan_file.read_text())
    assert written["spacing"] == [1.0, 1.0, 1.0]
    # new weights start without the previous model's post-processing
    assert written["postprocessing"] == {"keep_largest": []}


def _two_validation_cases() -> list[dict[str, torch.Tensor]]:
    # case 0: the lesion and a small false positive, which keeping the largest component removes (Dice 0.95 -> 1)
    label = torch.zeros(16, 16, 4, dtype=torch.int64)
    label[2:8, 2:8] = 1
    pred = label.clone()
    pred[12:14, 12:14] = 1
    first = {"pred": _onehot(pred, 2), "label": _onehot(label, 2)}
    # case 1: two lesions, both found; keeping the largest component loses the smaller one (Dice 1 -> 0.71)
    label = torch.zeros(16, 16, 4, dtype=torch.int64)
    label[1:7, 1:7] = 1
    label[10:15, 9:15] = 1
    second = {"pred": _onehot(label, 2), "label": _onehot(label, 2)}
    return [first, second]


def _validate(cases: list[dict[str, torch.Tensor]], plan_file: str, new_best: bool = True) -> None:
    from ignite.engine import Engine, Events

    validator = Engine(lambda e, batch: batch)

    @validator.on(Events.EPOCH_COMPLETED)
    def _mark_best(e):  # the validator's record of a new best key metric, set before the selector decides
        e.state.best_metric_epoch = e.state.epoch if new_best else 0

    PostprocessingSelector(plan_file).attach(validator)
    validator.run(cases, max_epochs=1)


def _validate_share(rank: int, plan_file: str) -> None:
    # each process its own case, as the validation sampler shares them out; rank 1's validator does not know the
    # score is a new best (a resumed run's record may differ): it must still hand its cases to rank 0
    _validate(_two_validation_cases()[rank : rank + 1], plan_file, new_best=rank == 0)


def test_a_torchrun_job_decides_on_the_validation_cases_of_every_process(tmp_path):
    first, one, two = tmp_path / "first.json", tmp_path / "one.json", tmp_path / "two.json"
    # rank 0's case alone would keep the largest component; both cases together do not
    _validate(_two_validation_cases()[:1], str(first))
    assert json.loads(first.read_text())["postprocessing"] == {"keep_largest": [1]}
    _validate(_two_validation_cases(), str(one))
    assert json.loads(one.read_text())["postprocessing"] == {"keep_largest": []}
    run_in_two_processes(_validate_share, str(two))
    assert json.loads(two.read_text())["postprocessing"] == json.loads(one.read_text())["postprocessing"]
