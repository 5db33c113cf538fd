"""Diff-SAE: a sparse autoencoder on ``h_ft - h_base``, trained with sae-lens's ``SAETrainer``.

The trainer is fed an infinite iterator of difference batches from an
:class:`~auditlens.store.ActivationStore`. The result is an inference ``sae_lens.SAE``
(BatchTopK trains save as JumpReLU, as in sae-lens) written in sae-lens's own format
(``cfg.json`` + ``sae_weights.safetensors``), so ``sae_lens.SAE.load_from_disk`` reads it.

Face: ``run(store, site, DiffSAEConfig(...)) -> DiffSAEResult`` and ``evidence(result)``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from jaxtyping import Float
from safetensors.torch import load_file, save_file
from torch import Tensor

from auditlens.diffing.latents import SAEDictionary
from auditlens.errors import AuditlensError, StoreError
from auditlens.reports.evidence import Evidence
from auditlens.reports.findings import Finding
from auditlens.reports.sections import Table
from auditlens.store import ActivationStore

__all__ = ["DiffSAEConfig", "DiffSAEResult", "diff_batches", "evidence", "load", "run"]

Architecture = Literal["topk", "batchtopk", "standard"]


@dataclass(frozen=True)
class DiffSAEConfig:
    """How to train a diff-SAE (sae-lens architecture and trainer settings)."""

    architecture: Architecture = "topk"
    """sae-lens training architecture: ``topk``, ``batchtopk`` (saved as JumpReLU) or
    ``standard`` (ReLU + L1)."""
    d_sae: int | None = None
    """Dictionary size; ``None``: ``expansion × d_model``."""
    expansion: int = 4
    """Dictionary size as a multiple of ``d_model`` when ``d_sae`` is ``None``."""
    k: int = 8
    """TopK / BatchTopK: active latents per token."""
    l1_coefficient: float = 1.0
    """Standard SAE: L1 coefficient."""
    lr: float = 1e-3
    """Adam learning rate."""
    batch_size: int = 512
    """Difference vectors per step."""
    n_steps: int | None = None
    """Steps; ``None``: ``epochs`` passes over the store."""
    epochs: float = 4.0
    """Passes over the store when ``n_steps`` is ``None``."""
    normalize: bool = True
    """sae-lens ``expected_average_only_in`` scaling (folded into the weights at the end)."""
    n_norm_batches: int = 8
    """Batches for the scaling estimate."""
    dead_feature_window: int = 1000
    """Steps without firing after which a latent counts as dead (AuxK for TopK variants)."""
    seed: int = 0
    """Seed of the initialisation and of the data order."""
    device: str = "cpu"
    """Device to train on."""

    def __post_init__(self) -> None:
        if self.architecture not in ("topk", "batchtopk", "standard"):
            raise AuditlensError(
                f"unknown diff-SAE architecture {self.architecture!r}; "
                "use topk, batchtopk or standard"
            )
        if self.d_sae is not None and self.d_sae < 1:
            raise AuditlensError("d_sae must be >= 1")
        if self.expansion < 1 or self.k < 1 or self.batch_size < 1 or self.n_norm_batches < 1:
            raise AuditlensError("expansion, k, batch_size and n_norm_batches must be >= 1")
        if self.n_steps is not None and self.n_steps < 1:
            raise AuditlensError("n_steps must be >= 1")
        if self.epochs <= 0 or self.lr <= 0 or self.l1_coefficient < 0:
            raise AuditlensError("epochs and lr must be > 0, l1_coefficient >= 0")
        if self.dead_feature_window < 1:
            raise AuditlensError("dead_feature_window must be >= 1")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def diff_batches(
    store: ActivationStore, site: str, batch_size: int, *, seed: int = 0, repeat: bool = True
) -> Iterator[Float[Tensor, "batch d_model"]]:
    """``h_ft - h_base`` batches from a store (shuffled per epoch with ``seed + epoch``)."""
    if site not in store.sites:
        raise StoreError(f"site {site!r} was not harvested; this store has {store.sites}")
    if store.n_tokens < batch_size:
        raise StoreError(
            f"the store has {store.n_tokens} tokens, fewer than one batch of {batch_size}"
        )
    epoch = 0
    while True:
        for b in store.iter_batches(
            site, batch_size, shuffle=True, seed=seed + epoch, drop_last=True
        ):
            yield b[:, 1] - b[:, 0]
        epoch += 1
        if not repeat:
            return


@contextmanager
def _quiet_tqdm(enabled: bool) -> Iterator[None]:
    """Silence sae-lens's tqdm bars when progress is off.

    sae-lens builds its bars without a ``disable`` switch (and tqdm reads ``TQDM_DISABLE``
    only at import), so the ``tqdm`` names of the two sae-lens modules that draw bars are
    swapped for disabled bars for the duration, then restored.
    """
    if enabled:
        yield
        return
    from functools import partial

    from sae_lens.training import activation_scaler, sae_trainer

    modules = [m for m in (sae_trainer, activation_scaler) if hasattr(m, "tqdm")]
    saved = [m.tqdm for m in modules]
    try:
        for m, bar in zip(modules, saved, strict=True):
            m.tqdm = partial(bar, disable=True)  # type: ignore[attr-defined]
        yield
    finally:
        for m, bar in zip(modules, saved, strict=True):
            m.tqdm = bar  # type: ignore[attr-defined]


def _training_sae(cfg: DiffSAEConfig, d_model: int, site: str, label: str) -> Any:
    import sae_lens
    from sae_lens import (
        BatchTopKTrainingSAE,
        BatchTopKTrainingSAEConfig,
        StandardTrainingSAE,
        StandardTrainingSAEConfig,
        TopKTrainingSAE,
        TopKTrainingSAEConfig,
    )
    from sae_lens.saes.sae import SAEMetadata

    d_sae = cfg.d_sae or cfg.expansion * d_model
    common: dict[str, Any] = {
        "d_in": d_model,
        "d_sae": d_sae,
        "device": cfg.device,
        "normalize_activations": "expected_average_only_in" if cfg.normalize else "none",
        "metadata": SAEMetadata(
            hook_name=site, model_name=label, sae_lens_version=sae_lens.__version__
        ),
    }
    if cfg.architecture == "topk":
        return TopKTrainingSAE(TopKTrainingSAEConfig(k=cfg.k, **common))
    if cfg.architecture == "batchtopk":
        return BatchTopKTrainingSAE(BatchTopKTrainingSAEConfig(k=float(cfg.k), **common))
    return StandardTrainingSAE(
        StandardTrainingSAEConfig(l1_coefficient=cfg.l1_coefficient, **common)
    )


def _to_inference(training_sae: Any) -> Any:
    """The inference ``SAE`` that ``save_inference_model`` would write, built in memory."""
    from sae_lens import SAE

    state = {k: v.detach().clone() for k, v in training_sae.state_dict().items()}
    training_sae.process_state_dict_for_saving_inference(state)
    sae = SAE.from_dict(training_sae.cfg.get_inference_sae_cfg_dict())
    sae.load_state_dict(state)
    return sae.eval()


@dataclass
class DiffSAEResult:
    """A trained diff-SAE (inference ``sae_lens.SAE``) with its evaluation and controls."""

    sae: Any
    site: str
    config: DiffSAEConfig
    stats: dict[str, float]
    frequency: Tensor
    """Fraction of evaluation tokens on which each latent fired."""
    provenance: dict[str, Any] = field(default_factory=dict)
    control: dict[str, dict[str, float]] = field(default_factory=dict)
    """Null controls; ``base_vs_base`` is exact: zero differences, and the latents that still
    fire on a zero input (bias latents)."""

    @torch.no_grad()
    def encode(self, diffs: Float[Tensor, "n d_model"]) -> Float[Tensor, "n d_sae"]:
        """Latent activations of difference vectors ``h_ft - h_base``."""
        return self.sae.encode(diffs.to(self.sae.W_enc.dtype))

    def decoder_directions(self) -> Float[Tensor, "d_sae d_model"]:
        return self.sae.W_dec.detach().clone()

    def dictionary(self) -> SAEDictionary:
        """This SAE as a dictionary for :func:`auditlens.diffing.latents.interpret_latents`."""
        return SAEDictionary(self.sae, self.site, input_kind="diff")

    def statistics(self) -> dict[str, float]:
        return dict(self.stats)

    def to_json(self) -> dict[str, Any]:
        top = torch.argsort(self.frequency, descending=True)[:20].tolist()
        return {
            "method": "diff_sae",
            "site": self.site,
            "d_sae": int(self.sae.cfg.d_sae),
            "architecture": self.sae.cfg.architecture(),
            "config": self.config.to_json(),
            "statistics": self.statistics(),
            "control": self.control,
            "most_frequent": [{"latent": i, "frequency": float(self.frequency[i])} for i in top],
            "provenance": self.provenance,
        }

    def save(self, directory: str | Path) -> Path:
        """sae-lens files (``cfg.json``, ``sae_weights.safetensors``) plus ``diff_sae.json``."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        self.sae.save_model(out)
        save_file({"frequency": self.frequency.contiguous()}, str(out / "diff_sae.safetensors"))
        (out / "diff_sae.json").write_text(json.dumps(self.to_json(), indent=1))
        return out


def load(directory: str | Path, *, device: str = "cpu") -> DiffSAEResult:
    """Load a :class:`DiffSAEResult` saved by :meth:`DiffSAEResult.save`."""
    from sae_lens import SAE

    path = Path(directory)
    try:
        meta = json.loads((path / "diff_sae.json").read_text())
        sae = SAE.load_from_disk(path, device=device)
        freq = load_file(str(path / "diff_sae.safetensors"))["frequency"]
        cfg = DiffSAEConfig(**meta["config"])
    except (OSError, KeyError, TypeError, ValueError) as err:
        raise AuditlensError(f"{path} holds no readable diff-SAE: {err}".splitlines()[0]) from err
    return DiffSAEResult(
        sae.eval(), meta["site"], cfg, dict(meta["statistics"]), freq,
        dict(meta.get("provenance", {})), dict(meta.get("control", {})),
    )  # fmt: skip


@torch.no_grad()
def _evaluate(
    sae: Any, batches: Iterator[Tensor], max_batches: int
) -> tuple[dict[str, float], Tensor]:
    fired = torch.zeros(int(sae.cfg.d_sae))
    err = var = l0 = 0.0
    mean_norm = 0.0
    n = 0
    for i, x in enumerate(batches):
        if i >= max_batches:
            break
        x = x.to(sae.W_enc.device, sae.W_enc.dtype)
        f = sae.encode(x)
        recon = sae.decode(f)
        err += float((recon - x).pow(2).sum())
        var += float((x - x.mean(0)).pow(2).sum())
        fired += (f > 0).sum(0).float().cpu()
        l0 += float((f > 0).sum())
        mean_norm += float(x.norm(dim=-1).sum())
        n += x.shape[0]
    if n == 0:
        raise AuditlensError("no difference vectors to evaluate the diff-SAE on")
    freq = fired / n
    stats = {
        "fve": 1 - err / max(var, 1e-30),
        "l0": l0 / n,
        "dead_fraction": float((fired == 0).float().mean()),
        "mean_diff_norm": mean_norm / n,
        "n_eval_tokens": float(n),
    }
    return stats, freq


def run(
    store: ActivationStore,
    site: str | None = None,
    config: DiffSAEConfig | None = None,
    *,
    progress: bool = True,
) -> DiffSAEResult:
    """Train a diff-SAE on a store's ``h_ft - h_base`` at one site with sae-lens."""
    import sae_lens
    from sae_lens import LoggingConfig, SAETrainer
    from sae_lens.config import SAETrainerConfig

    cfg = config or DiffSAEConfig()
    site = site or store.sites[0]
    manifest_models = store.manifest.get("models", {})
    label = "{}->{} diff".format(
        manifest_models.get("base", {}).get("label", "base"),
        manifest_models.get("finetuned", {}).get("label", "finetuned"),
    )
    probe = next(diff_batches(store, site, cfg.batch_size, seed=cfg.seed, repeat=False))
    if float(probe.abs().max()) == 0.0:
        raise AuditlensError(
            f"h_ft - h_base is zero at {site} (identical models there): "
            "nothing to train a diff-SAE on"
        )
    n_steps = cfg.n_steps or max(1, int(cfg.epochs * store.n_tokens / cfg.batch_size))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        sae = _training_sae(cfg, store.d_model, site, label)
    trainer_cfg = SAETrainerConfig(
        total_training_samples=n_steps * cfg.batch_size,
        train_batch_size_samples=cfg.batch_size,
        lr=cfg.lr,
        lr_end=cfg.lr,
        device=cfg.device,
        dead_feature_window=cfg.dead_feature_window,
        feature_sampling_window=max(cfg.dead_feature_window, n_steps + 1),
        n_checkpoints=0,
        save_final_checkpoint=False,
        logger=LoggingConfig(log_to_wandb=False),
        n_batches_for_norm_estimate=cfg.n_norm_batches,
    )
    data = diff_batches(store, site, cfg.batch_size, seed=cfg.seed)
    trainer = SAETrainer(cfg=trainer_cfg, sae=sae, data_provider=data)
    with _quiet_tqdm(progress):
        trained = trainer.fit()
    inference = _to_inference(trained)
    held = diff_batches(store, site, cfg.batch_size, seed=cfg.seed + 10_000, repeat=False)
    stats, freq = _evaluate(inference, held, max_batches=64)
    stats["train_steps"] = float(n_steps)
    with torch.no_grad():  # base vs base: every difference is exactly zero
        zero = torch.zeros(1, store.d_model, dtype=inference.W_enc.dtype)
        zero_l0 = float((inference.encode(zero) > 0).sum())
    control = {"base_vs_base": {"mean_diff_norm": 0.0, "l0": zero_l0}}
    provenance = {
        "store": str(store.directory),
        "models": manifest_models,
        "dataset": store.manifest.get("dataset", {}),
        "sae_lens": sae_lens.__version__,
    }
    return DiffSAEResult(inference, site, cfg, stats, freq, provenance, control)


def evidence(result: DiffSAEResult, where: str | None = None) -> Evidence:
    """How well a sparse dictionary explains ``h_ft - h_base`` and its most frequent latents."""
    stats = result.stats
    zero = result.control.get("base_vs_base", {})
    finding = Finding(
        id="diffing.diff_sae.fve",
        family="diffing",
        method="diff_sae",
        site=result.site,
        statistic="fraction of the variance of h_ft - h_base explained by the diff-SAE",
        value=float(stats["fve"]),
        summary=(
            f"A {result.config.architecture} diff-SAE with {int(result.sae.cfg.d_sae)} latents "
            f"at {result.site} explains {stats['fve']:.3f} of the variance of h_ft - h_base "
            f"(L0 {stats['l0']:.1f}, dead fraction {stats['dead_fraction']:.2f}; mean "
            f"||h_ft - h_base|| {stats['mean_diff_norm']:.3g}). Base vs base the difference "
            f"is exactly 0 ({zero.get('l0', 0.0):.0f} latents fire on it)."
        ),
        artifacts=[f"{where}/diff_sae.json"] if where else [],
    )
    top = sorted(range(result.frequency.numel()), key=lambda i: -float(result.frequency[i]))
    table = Table(
        title=f"Most frequent diff-SAE latents at {result.site}",
        columns=["latent", "frequency"],
        rows=[[i, float(result.frequency[i])] for i in top[:10]],
    )
    return Evidence(findings=[finding], sections=[table])
