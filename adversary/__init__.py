"""auditlens.adversary: latent adversaries (steering, MELBO, activation and weight noise).

The audit's method is :mod:`~auditlens.adversary.elicit` (``run`` / ``evidence``): MELBO
vectors and activation noise applied identically to both models, with matched-norm random
controls; :func:`elicit_backdoor` reads the same search as a backdoor hunt. The tools under it:
:func:`train_melbo` (batched unsupervised steering vectors), :func:`run_perturbations` (any
perturbation -> generations -> scorers and a detector, with controls), :func:`fuzz_activations`
and :func:`weight_noise_sweep`, and steering itself (:func:`steer`, :class:`SteeringVector`,
from :mod:`auditlens.steering`).
"""

from auditlens.adversary import elicit
from auditlens.adversary.backdoor import elicit_backdoor
from auditlens.adversary.fuzz import (
    ActivationNoise,
    WeightNoise,
    fuzz_activations,
    weight_noise_sweep,
)
from auditlens.adversary.melbo import MelboConfig, train_melbo
from auditlens.adversary.runner import run_perturbations
from auditlens.steering import Steer, SteeringVector, steer, steer_pair

__all__ = [
    "ActivationNoise",
    "MelboConfig",
    "Steer",
    "SteeringVector",
    "WeightNoise",
    "elicit",
    "elicit_backdoor",
    "fuzz_activations",
    "run_perturbations",
    "steer",
    "steer_pair",
    "train_melbo",
    "weight_noise_sweep",
]
