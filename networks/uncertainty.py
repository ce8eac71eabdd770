"""Uncertainty scores of unlabelled studies, for active learning in MONAI Label."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch

from ..transforms.uncertainty import entropy_map

__all__ = ["UncertaintyScoring", "uncertainty_score"]

logger = logging.getLogger(__name__)


def uncertainty_score(probabilities: torch.Tensor) -> float:
    """Mean normalised entropy (0..1) of a probability map (C, ...), over the voxels not surely background.

    Averaging over the whole volume would let the large, easy background drown the uncertain structures, so
    voxels whose background probability exceeds 0.99 are left out (all voxels if none remain).

    Args:
        probabilities: class probabilities, channel first (C, ...) with C >= 2, channel 0 the background; a tensor or
            an array, taken as float32. Each voxel's entropy is :func:`~monai_unets.transforms.entropy_map`.

    Raises:
        ValueError: when there are fewer than 2 channels.

    Example::

        >>> round(uncertainty_score(torch.tensor([[1.0, 0.5], [0.0, 0.5]])), 3)
        1.0
    """
    probs = torch.as_tensor(probabilities, dtype=torch.float32)
    entropy = entropy_map(probs)
    relevant = probs[0] <= 0.99
    return float(entropy[relevant].mean() if relevant.any() else entropy.mean())


class UncertaintyScoring:
    """A MONAI Label scoring method: ranks unlabelled studies by the uncertainty of their prediction.

    Same interface as MONAI Label's ``ScoringMethod`` (``info()`` and ``__call__(request, datastore)``), so an
    app registers it in ``init_scoring_methods()``; the ``"uncertainty"`` strategy of MONAI Label (or any that
    reads the stored key) then picks the study with the highest score for labelling next. Probabilities come
    from ``predict``, e.g. a bundle's inference with ``tta: true`` or an ``ensemble`` (``EnsembleInferer``),
    whose averaged probabilities make the entropy reflect the members' disagreement.

    Args:
        predict: maps an image path to its class probabilities (C, X, Y, Z).
        key: the image info key the score is stored under in the datastore.
        description: shown by MONAI Label.

    Example::

        >>> class MyApp(MONAILabelApp):  # doctest: +SKIP
        ...     def init_scoring_methods(self):
        ...         return {"tta_entropy": UncertaintyScoring(predict_probabilities)}
    """

    def __init__(
        self,
        predict: Callable[[str], torch.Tensor],
        key: str = "tta_entropy",
        description: str = "Mean normalised entropy of the predicted class probabilities",
    ) -> None:
        self.predict = predict
        self.key = key
        self.description = description

    def info(self) -> dict[str, Any]:
        return {"description": self.description}

    def __call__(self, request: dict[str, Any], datastore: Any) -> dict[str, Any]:
        """Score every unlabelled image of ``datastore`` and store the scores in its image info."""
        scores: dict[str, float] = {}
        for image_id in datastore.get_unlabeled_images():
            score = uncertainty_score(self.predict(datastore.get_image_uri(image_id)))
            datastore.update_image_info(image_id, {self.key: score})
            scores[image_id] = score
            logger.info("%s: %s = %.4f", image_id, self.key, score)
        return {"executed": True, "scores": scores}
