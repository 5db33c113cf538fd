"""auditlens.diffing: where and how fine-tuning changed a model (activations, logits, weights)."""

from auditlens.diffing.adl import (
    ADLConfig,
    ADLResult,
    SteeringCheck,
    activation_difference_lens,
    steering_check,
)
from auditlens.diffing.controls import NullControl, base_vs_base, null_control
from auditlens.diffing.crosscoder import CheckpointError, Crosscoder, CrosscoderConfig
from auditlens.diffing.crosscoder_analysis import (
    CrosscoderAnalysis,
    CrosscoderResult,
    analyze_crosscoder,
    classify_latents,
    crosscoder_diff,
    decoder_cosine,
    load_crosscoder_result,
    relative_decoder_norm,
)
from auditlens.diffing.crosscoder_train import (
    CrosscoderTrainConfig,
    CrosscoderTrainer,
    CrosscoderTraining,
    store_batches,
    train_crosscoder,
)
from auditlens.diffing.diff_sae import DiffSAEConfig, DiffSAEResult, load_diff_sae, train_diff_sae
from auditlens.diffing.kl import KLAccumulator, KLSummary, TopKLToken
from auditlens.diffing.latent_scaling import LatentScaling, latent_scaling
from auditlens.diffing.latents import (
    CrosscoderDictionary,
    LatentInfo,
    LatentReport,
    SAEDictionary,
    interpret_latents,
)
from auditlens.diffing.scan import (
    ScanResult,
    activation_diff_stats,
    per_token_kl,
    scan_pair,
    store_diff_stats,
)
from auditlens.diffing.stats import DiffStatsAccumulator, SiteDiffStats, TopToken, diff_norms
from auditlens.diffing.synthetic import plant_feature, synthetic_pairs
from auditlens.diffing.weights import WeightDiffResult, WeightDiffRow, weight_diff

__all__ = [
    "ADLConfig",
    "ADLResult",
    "CheckpointError",
    "Crosscoder",
    "CrosscoderAnalysis",
    "CrosscoderConfig",
    "CrosscoderDictionary",
    "CrosscoderResult",
    "CrosscoderTrainConfig",
    "CrosscoderTrainer",
    "CrosscoderTraining",
    "DiffSAEConfig",
    "DiffSAEResult",
    "DiffStatsAccumulator",
    "KLAccumulator",
    "KLSummary",
    "LatentInfo",
    "LatentReport",
    "LatentScaling",
    "NullControl",
    "SAEDictionary",
    "ScanResult",
    "SiteDiffStats",
    "SteeringCheck",
    "TopKLToken",
    "TopToken",
    "WeightDiffResult",
    "WeightDiffRow",
    "activation_diff_stats",
    "activation_difference_lens",
    "analyze_crosscoder",
    "base_vs_base",
    "classify_latents",
    "crosscoder_diff",
    "decoder_cosine",
    "diff_norms",
    "interpret_latents",
    "latent_scaling",
    "load_crosscoder_result",
    "load_diff_sae",
    "null_control",
    "per_token_kl",
    "plant_feature",
    "relative_decoder_norm",
    "scan_pair",
    "steering_check",
    "store_batches",
    "store_diff_stats",
    "synthetic_pairs",
    "train_crosscoder",
    "train_diff_sae",
    "weight_diff",
]
