from __future__ import annotations

import pytest
import torch
from monai.inferers import SimpleInferer
from monai_unets.handlers.checkpoint import CheckpointError, save_atomic
from monai_unets.networks import EnsembleInferer, UncertaintyScoring, mirror_axes, model_files, uncertainty_score


class RampNet(torch.nn.Module):
    """Class-1 logit grows along the first spatial axis: not mirror-symmetric, so TTA must change its output."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ramp = torch.linspace(-1, 1, x.shape[2]).view(1, 1, -1, *([1] * (x.dim() - 3))).expand_as(x)
        return torch.cat([torch.zeros_like(x), self.scale * (ramp + x)], dim=1)


def test_mirror_axes_cover_every_subset_once():
    axes = mirror_axes(3)
    assert len(axes) == 8 and len(set(axes)) == 8 and axes[0] == ()


def test_without_tta_or_ensemble_the_logits_pass_unchanged():
    x = torch.randn(1, 1, 6, 5, 4)
    net = RampNet()
    torch.testing.assert_close(EnsembleInferer(SimpleInferer())(x, net), net(x))


def test_tta_maps_each_mirrored_prediction_back_before_averaging():
    # a constant image: mirrored predictions mapped back are the ramp reversed, so the average is symmetric
    x = torch.zeros(1, 1, 6, 5, 4)
    net = RampNet()
    probs = torch.softmax(EnsembleInferer(SimpleInferer(), tta=True)(x, net), dim=1)
    torch.testing.assert_close(probs, torch.flip(probs, (2,)))
    torch.testing.assert_close(probs.sum(1), torch.ones(1, 6, 5, 4))
    # and an input feature still lands where it was: the brighter voxel keeps the higher class-1 probability
    x[0, 0, 1, 2, 3] = 3.0
    probs = torch.softmax(EnsembleInferer(SimpleInferer(), tta=True)(x, net), dim=1)
    assert probs[0, 1].argmax() == torch.tensor([1, 2, 3]) @ torch.tensor([5 * 4, 4, 1])


def test_tta_mirrors_a_2d_input_over_its_own_two_axes():
    x = torch.zeros(1, 1, 6, 5)
    x[0, 0, 1, 2] = 3.0
    net = RampNet()
    probs = torch.softmax(EnsembleInferer(SimpleInferer(), tta=True)(x, net), dim=1)
    # the four mirrorings of a 2D image (a 3D inferer had mirrored a fifth dimension the input lacks)
    expected = sum(torch.softmax(torch.flip(net(torch.flip(x, axes)), axes), dim=1) for axes in mirror_axes(2)) / 4
    torch.testing.assert_close(probs, expected)
    assert probs[0, 1].argmax() == 1 * 5 + 2


def _fold_checkpoints(folder, scales=(1.0, 4.0)):
    paths = [folder / f"model_fold{i}.pt" for i in range(len(scales))]
    for path, scale in zip(paths, scales):
        torch.save(RampNet(scale).state_dict(), path)
    return paths


def test_ensemble_averages_the_probabilities_of_the_checkpoints(tmp_path):
    paths = _fold_checkpoints(tmp_path)
    x = torch.randn(1, 1, 6, 5, 4)
    given = RampNet(100.0)  # its own weights are replaced by each checkpoint's
    out = EnsembleInferer(SimpleInferer(), paths)(x, given)
    expected = (torch.softmax(RampNet(1.0)(x), 1) + torch.softmax(RampNet(4.0)(x), 1)) / 2
    torch.testing.assert_close(torch.softmax(out, 1), expected.detach(), atol=1e-5, rtol=1e-5)


def test_members_first_made_under_inference_mode_serve_later_calls(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(RampNet(2.0).state_dict(), path)
    inferer, network = EnsembleInferer(SimpleInferer(), [path], tta=True), RampNet()
    x = torch.randn(1, 1, 6, 5, 4)
    with torch.inference_mode():
        first = inferer(x, network)
    assert not any(p.is_inference() for member in inferer.members(network) for p in member.parameters())
    # an evaluator under no_grad (or validation during training) reuses the same members
    with torch.no_grad():
        torch.testing.assert_close(inferer(x, network), first)


def test_members_follow_a_checkpoint_rewritten_after_the_first_call(tmp_path):
    # an inferer and network kept between runs while a training rewrites model.pt
    path = tmp_path / "model.pt"
    save_atomic(RampNet(1.0).state_dict(), path)
    inferer, network = EnsembleInferer(SimpleInferer(), [path]), RampNet()
    x = torch.randn(1, 1, 6, 5, 4)
    with torch.no_grad():
        inferer(x, network)
        save_atomic(RampNet(3.0).state_dict(), path)
        torch.testing.assert_close(inferer(x, network), RampNet(3.0)(x))
        # an unchanged file keeps the members
        members = inferer.members(network)
        assert inferer.members(network) is members


def test_checkpoint_written_by_checkpoint_saver_with_several_objects_loads(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"model": RampNet(2.0).state_dict(), "epoch": 3}, path)
    x = torch.randn(1, 1, 4, 4, 4)
    out = EnsembleInferer(SimpleInferer(), [path])(x, RampNet(0.0))
    torch.testing.assert_close(torch.softmax(out, 1), torch.softmax(RampNet(2.0)(x), 1).detach())


def test_missing_or_mismatched_checkpoint_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="nothere.pt"):
        EnsembleInferer(SimpleInferer(), [tmp_path / "nothere.pt"])(torch.zeros(1, 1, 4, 4, 4), RampNet())
    torch.save({"other": torch.zeros(1)}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="bad.pt"):
        EnsembleInferer(SimpleInferer(), [tmp_path / "bad.pt"])(torch.zeros(1, 1, 4, 4, 4), RampNet())


def test_a_member_of_other_classes_is_told_to_run_with_the_class_names_too(tmp_path):
    # in a bundle that names its classes, num_classes alone is refused: the message gives both settings
    torch.save(torch.nn.Conv3d(1, 2, 1).state_dict(), tmp_path / "fold0.pt")
    ensemble = EnsembleInferer(SimpleInferer(), [tmp_path / "fold0.pt"], class_names=["pancreas", "tumour"])
    with pytest.raises(CheckpointError, match=r"""--num_classes 2 --class_names "\['class1'\]" \(a name for each"""):
        ensemble(torch.zeros(1, 1, 4, 4, 4), torch.nn.Conv3d(1, 3, 1))


def test_uncertainty_score_ranks_uncertain_studies_higher():
    sure = torch.tensor([[0.02, 0.02], [0.98, 0.98]])
    unsure = torch.tensor([[0.4, 0.5], [0.6, 0.5]])
    assert uncertainty_score(unsure) > uncertainty_score(sure)


class _Datastore:
    def __init__(self):
        self.info: dict[str, dict] = {}

    def get_unlabeled_images(self):
        return ["a", "b"]

    def get_image_uri(self, image_id):
        return f"/data/{image_id}.nii.gz"

    def update_image_info(self, image_id, info):
        self.info.setdefault(image_id, {}).update(info)


def test_scoring_method_stores_a_score_per_unlabelled_image():
    probs = {"/data/a.nii.gz": torch.tensor([[0.5], [0.5]]), "/data/b.nii.gz": torch.tensor([[0.1], [0.9]])}
    datastore = _Datastore()
    result = UncertaintyScoring(probs.__getitem__)({}, datastore)
    assert result["executed"]
    assert datastore.info["a"]["tta_entropy"] == pytest.approx(1.0)
    assert datastore.info["a"]["tta_entropy"] > datastore.info["b"]["tta_entropy"]


def test_a_binary_network_is_averaged_as_sigmoid_probabilities(tmp_path):
    # one output channel: a softmax over it is 1 everywhere, which would give an all-zero output
    paths = _fold_checkpoints(tmp_path)
    x = torch.randn(1, 1, 6, 5, 4)

    def foreground(scale):
        return RampNet(scale)(x)[:, 1:]

    class Binary(RampNet):
        def forward(self, x):
            return super().forward(x)[:, 1:]

    out = EnsembleInferer(SimpleInferer(), paths)(x, Binary())
    assert out.shape == (1, 1, 6, 5, 4)
    expected = (torch.sigmoid(foreground(1.0)) + torch.sigmoid(foreground(4.0))) / 2
    torch.testing.assert_close(torch.sigmoid(out), expected.detach(), atol=1e-5, rtol=1e-5)
    # with mirroring: the average of the mirrored passes' sigmoids, each mapped back
    net = Binary()
    flips = [torch.flip(torch.sigmoid(net(torch.flip(x, axes))), axes) for axes in mirror_axes(3)]
    mirrored = torch.sigmoid(EnsembleInferer(SimpleInferer(), tta=True)(x, net))
    torch.testing.assert_close(mirrored, (sum(flips) / len(flips)).detach(), atol=1e-5, rtol=1e-5)


def test_a_model_listed_twice_or_copied_is_refused_naming_both(tmp_path):
    # averaged, it had counted twice against the other members, without a word
    fold0, fold1 = _fold_checkpoints(tmp_path)
    with pytest.raises(CheckpointError, match=r"model_fold0\.pt: is listed twice; the ensemble would count"):
        EnsembleInferer(SimpleInferer(), [fold0, fold1, fold0]).members(RampNet())
    copy = tmp_path / "copy.pt"
    copy.write_bytes(fold1.read_bytes())
    with pytest.raises(CheckpointError, match=rf"copy\.pt: holds the same weights as {fold1}; the ensemble"):
        EnsembleInferer(SimpleInferer(), [fold0, fold1, copy]).members(RampNet())


def test_model_files_of_an_ensemble_setting():
    # as the command line gives `--ensemble`: a list, a,b (a tuple), one name (a string, not a list of letters)
    assert model_files("m", ["a.pt", "b.pt"]) == model_files("m", ("a.pt", "b.pt")) == ["m/a.pt", "m/b.pt"]
    assert model_files("m", "fold1.pt") == ["m/fold1.pt"]
    assert model_files("m", []) == model_files("m", None) == ["m/model.pt"]
    assert model_files("m", [], "model_fold2.pt") == ["m/model_fold2.pt"]


def test_a_training_checkpoint_is_no_served_model(tmp_path):
    from monai_unets.networks import served_model_file, served_model_files

    for name in ("model.pt", "model_fold0.pt", "checkpoint.pt", "checkpoint_fold0.pt", "checkpoint_best.pt"):
        (tmp_path / name).write_bytes(b"x")
    # MONAI Label's model_filename option had offered checkpoint.pt, and served it when chosen; weights a user named
    # otherwise are offered
    assert served_model_files(tmp_path) == ["model.pt", "model_fold0.pt", "checkpoint_best.pt"]
    assert served_model_file(tmp_path, "checkpoint_best.pt") == str(tmp_path / "checkpoint_best.pt")
    # names out of the list are not run: a training's kept checkpoint, a path out of the folder
    (tmp_path / "previous").mkdir()
    (tmp_path / "previous" / "checkpoint.pt").write_bytes(b"x")
    (tmp_path.parent / "elsewhere.pt").write_bytes(b"x")
    for name in ("previous/checkpoint.pt", "../elsewhere.pt", str(tmp_path.parent / "elsewhere.pt")):
        assert served_model_file(tmp_path, name) == str(tmp_path / "model.pt")
    assert served_model_file(tmp_path, "checkpoint.pt") == str(tmp_path / "model.pt")
    assert served_model_file(tmp_path, "model_fold0.pt") == str(tmp_path / "model_fold0.pt")
