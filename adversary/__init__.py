"""auditlens.adversary: steering, MELBO, fuzzing and one perturbation runner with controls."""

from auditlens.adversary.backdoor import BackdoorElicitation, SideSearch, elicit_backdoor
from auditlens.adversary.fuzz import (
    ActivationNoise,
    WeightNoise,
    WeightNoiseSweep,
    activation_noise,
    fuzz_activations,
    generation_task,
    weight_noise,
    weight_noise_sweep,
)
from auditlens.adversary.melbo import (
    MelboConfig,
    MelboResult,
    default_melbo_sites,
    train_melbo,
    train_melbo_reference,
)
from auditlens.adversary.runner import (
    Perturbation,
    PerturbationRow,
    PerturbationTable,
    Scorer,
    run_perturbations,
)
from auditlens.steering import (
    Steer,
    SteeringHandle,
    SteeringVector,
    as_steering_vector,
    mean_activation_norm,
    steer,
    steer_pair,
)

__all__ = [
    "ActivationNoise",
    "BackdoorElicitation",
    "MelboConfig",
    "MelboResult",
    "Perturbation",
    "PerturbationRow",
    "PerturbationTable",
    "Scorer",
    "SideSearch",
    "Steer",
    "SteeringHandle",
    "SteeringVector",
    "WeightNoise",
    "WeightNoiseSweep",
    "activation_noise",
    "as_steering_vector",
    "default_melbo_sites",
    "elicit_backdoor",
    "fuzz_activations",
    "generation_task",
    "mean_activation_norm",
    "run_perturbations",
    "steer",
    "steer_pair",
    "train_melbo",
    "train_melbo_reference",
    "weight_noise",
    "weight_noise_sweep",
]
