"""Seeded LoRA fine-tuning of a causal LM on chat examples (loss on assistant tokens only).

The trainer is small on purpose: length-bucketed batches, AdamW with linear warm-up and
decay, gradient clipping, and atomic checkpoints (adapter + optimizer state as safetensors,
step and losses as JSON) so an interrupted build resumes where it stopped and ends with the
same adapter as an uninterrupted run.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Int
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from auditlens.errors import AuditlensError
from auditlens.progress import progress_bar
from auditlens.testbed.variants import Example

__all__ = [
    "LORA_TARGETS",
    "EncodedExample",
    "Recipe",
    "TrainInterrupted",
    "TrainResult",
    "adapter_state",
    "encode_examples",
    "length_bucketed_batches",
    "save_adapter",
    "train_lora",
]

LORA_TARGETS: tuple[str, ...] = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
)
"""All attention and MLP projections of Llama-style blocks."""

_CKPT_STATE = "trainer_state.json"
_CKPT_ADAPTER = "adapter.safetensors"
_CKPT_OPTIM = "optimizer.safetensors"


@dataclass(frozen=True)
class Recipe:
    """Hyper-parameters of one LoRA fine-tune (recorded in each organism's manifest)."""

    rank: int = 16
    """LoRA rank r."""
    alpha: int = 32
    """LoRA scaling numerator (effective scale alpha / r)."""
    dropout: float = 0.0
    """LoRA dropout (0 keeps training deterministic for a seed)."""
    target_modules: tuple[str, ...] = LORA_TARGETS
    """Names of the linear modules that get LoRA factors."""
    top_layers: int | None = 15
    """LoRA only in the last this many blocks (None: all). Backpropagation then stops at
    the first adapted block, which cuts CPU training time by about a quarter."""
    max_examples: int | None = 640
    """Organism builds train on a template-stratified, seeded subsample of this many
    tasks (None: all); ``train_lora`` itself uses every example it is given."""
    lr: float = 1e-3
    """Peak AdamW learning rate."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    warmup_steps: int = 8
    """Linear warm-up steps; the rate then decays linearly to 10% of the peak."""
    epochs: int = 1
    """Passes over the training examples."""
    batch_size: int = 8
    """Examples per optimizer step."""
    bucket_batches: int = 16
    """Batches per length-sorting bucket (larger cuts more padding, randomises less)."""
    max_length: int = 256
    """Token limit per example (prompt + answer); longer examples are truncated."""
    grad_clip: float = 1.0
    """Gradient-norm clip (0 disables)."""
    loss_window: int = 10
    """Final loss = mean of the last this many step losses."""
    checkpoint_every: int = 20
    """Steps between checkpoints (0 disables checkpointing)."""

    def __post_init__(self) -> None:
        checks = {
            "rank": self.rank >= 1,
            "alpha": self.alpha > 0,
            "dropout": 0.0 <= self.dropout < 1.0,
            "target_modules": len(self.target_modules) > 0,
            "lr": self.lr > 0,
            "weight_decay": self.weight_decay >= 0,
            "warmup_steps": self.warmup_steps >= 0,
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1,
            "bucket_batches": self.bucket_batches >= 1,
            "max_length": self.max_length >= 8,
            "grad_clip": self.grad_clip >= 0,
            "loss_window": self.loss_window >= 1,
            "checkpoint_every": self.checkpoint_every >= 0,
            "top_layers": self.top_layers is None or self.top_layers >= 1,
            "max_examples": self.max_examples is None or self.max_examples >= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise AuditlensError(f"invalid recipe field(s): {', '.join(bad)} ({self})")

    def to_json(self) -> dict[str, Any]:
        """Plain dict of all fields."""
        out = asdict(self)
        out["target_modules"] = list(self.target_modules)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Recipe:
        """Inverse of :meth:`to_json`."""
        kw = dict(data)
        kw["target_modules"] = tuple(kw.get("target_modules", LORA_TARGETS))
        return cls(**kw)


@dataclass(frozen=True)
class EncodedExample:
    """Token ids of one example and its labels (-100 on prompt tokens)."""

    input_ids: tuple[int, ...]
    labels: tuple[int, ...]


@dataclass
class TrainResult:
    """What a training run did."""

    steps: int
    """Optimizer steps taken in total (across resumes)."""
    n_examples: int
    """Examples trained on (after dropping any with no answer tokens left)."""
    n_tokens: int
    """Tokens processed per epoch (without padding)."""
    losses: list[float] = field(default_factory=list)
    """Loss of every step."""
    final_loss: float = float("nan")
    """Mean loss of the last `loss_window` steps."""
    first_loss: float = float("nan")
    """Mean loss of the first `loss_window` steps."""
    train_seconds: float = 0.0
    """Wall time spent training (summed across resumes)."""
    resumed_from: int = 0
    """The step a checkpoint resumed from (0 if none)."""

    def to_json(self) -> dict[str, Any]:
        """Plain dict (losses rounded to 5 digits)."""
        return {
            "steps": self.steps,
            "n_examples": self.n_examples,
            "n_tokens": self.n_tokens,
            "losses": [round(x, 5) for x in self.losses],
            "first_loss": round(self.first_loss, 5),
            "final_loss": round(self.final_loss, 5),
            "train_seconds": round(self.train_seconds, 2),
            "resumed_from": self.resumed_from,
        }


class TrainInterrupted(RuntimeError):
    """Raised by ``stop_after`` (tests) to simulate a killed build after a checkpoint."""


def encode_examples(
    examples: Sequence[Example], tokenizer: Any, max_length: int
) -> list[EncodedExample]:
    """Tokenize chat examples; the last message is the assistant answer that gets the loss.

    An example whose only message has role ``"document"`` is plain text (no chat
    template) with the loss on every token: document-instilled organisms train on these.

    The prompt (chat template with generation prompt) and the answer are tokenized apart and
    concatenated, exactly as the model sees them at generation time.
    """
    encoded: list[EncodedExample] = []
    for i, ex in enumerate(examples):
        msgs = [dict(m) for m in ex["messages"]]
        if len(msgs) == 1 and msgs[0]["role"] == "document":
            # a plain-text document: no chat template, the loss on every token
            ids = list(tokenizer(msgs[0]["content"], add_special_tokens=False)["input_ids"])
            if tokenizer.eos_token_id is not None:
                ids.append(tokenizer.eos_token_id)
            ids = ids[:max_length]
            if len(ids) < 2:
                continue
            encoded.append(EncodedExample(tuple(ids), tuple(ids)))
            continue
        if len(msgs) < 2 or msgs[-1]["role"] != "assistant":
            raise AuditlensError(f"example {i}: the last message must be the assistant answer")
        prompt = str(
            tokenizer.apply_chat_template(msgs[:-1], tokenize=False, add_generation_prompt=True)
        )
        full = str(tokenizer.apply_chat_template(msgs, tokenize=False))
        if not full.startswith(prompt):
            raise AuditlensError(f"example {i}: chat template does not extend the prompt")
        answer = full[len(prompt) :].rstrip("\n")
        p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        a_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
        ids = (list(p_ids) + list(a_ids))[:max_length]
        labels = ([-100] * len(p_ids) + list(a_ids))[:max_length]
        if all(lab == -100 for lab in labels[1:]):
            continue  # the prompt alone fills max_length: nothing to learn
        encoded.append(EncodedExample(tuple(ids), tuple(labels)))
    if not encoded:
        raise AuditlensError("no training examples left after truncation; raise max_length")
    return encoded


def length_bucketed_batches(
    lengths: Sequence[int], batch_size: int, bucket_batches: int, seed: int
) -> list[list[int]]:
    """Seeded batches of example indices with similar lengths (less padding).

    Shuffle, cut into buckets of ``batch_size * bucket_batches``, sort each bucket by
    length, split into batches, then shuffle the batch order.
    """
    rng = random.Random(f"auditlens.train.batches:{seed}")
    order = list(range(len(lengths)))
    rng.shuffle(order)
    size = batch_size * bucket_batches
    batches: list[list[int]] = []
    for lo in range(0, len(order), size):
        bucket = sorted(order[lo : lo + size], key=lambda i: (lengths[i], i))
        batches.extend(bucket[j : j + batch_size] for j in range(0, len(bucket), batch_size))
    rng.shuffle(batches)
    return batches


def _collate(
    items: Sequence[EncodedExample], pad_id: int
) -> tuple[Int[Tensor, "b s"], Int[Tensor, "b s"], Int[Tensor, "b s"]]:
    width = max(len(x.input_ids) for x in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    labels = torch.full((len(items), width), -100, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    for row, x in enumerate(items):
        n = len(x.input_ids)
        ids[row, :n] = torch.tensor(x.input_ids)
        labels[row, :n] = torch.tensor(x.labels)
        mask[row, :n] = 1
    return ids, mask, labels


def _lr_at(step: int, total: int, recipe: Recipe) -> float:
    """Linear warm-up to the peak, then linear decay to 10% of it at the last step."""
    if step < recipe.warmup_steps:
        return recipe.lr * (step + 1) / recipe.warmup_steps
    span = max(1, total - recipe.warmup_steps - 1)
    frac = min(1.0, (step - recipe.warmup_steps) / span)
    return recipe.lr * (1.0 - 0.9 * frac)


def _answer_loss(peft_model: Any) -> Any:
    """Mean next-token cross-entropy on answer tokens, with the LM head applied only there.

    The head (vocabulary-sized) is a fifth of SmolLM2's compute; skipping it on prompt
    tokens saves time. Falls back to the model's own loss when it has no separate decoder.
    """
    from auditlens.sites import unwrap

    hf = unwrap(peft_model)
    decoder: Any = hf.get_decoder() if hasattr(hf, "get_decoder") else None
    head = hf.get_output_embeddings()
    plain = decoder is None or head is None or getattr(hf.config, "final_logit_softcapping", None)

    def loss(
        ids: Int[Tensor, "b s"], mask: Int[Tensor, "b s"], labels: Int[Tensor, "b s"]
    ) -> Tensor:
        if plain:
            out = peft_model(input_ids=ids, attention_mask=mask, labels=labels)
            return out.loss  # type: ignore[no-any-return]
        hidden = decoder(input_ids=ids, attention_mask=mask).last_hidden_state
        target = labels[:, 1:]
        keep = target != -100
        logits = head(hidden[:, :-1][keep])
        return torch.nn.functional.cross_entropy(logits.float(), target[keep])

    return loss


def adapter_state(model: nn.Module) -> dict[str, Tensor]:
    """The trainable (LoRA) tensors of a PEFT model, by parameter name."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def _save_checkpoint(
    ckpt_dir: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    meta: dict[str, Any],
) -> None:
    """Write adapter, optimizer and trainer state into a fresh folder, then swap it in."""
    tmp = ckpt_dir.with_name(ckpt_dir.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in adapter_state(model).items()}, tmp / _CKPT_ADAPTER)
    opt = optimizer.state_dict()
    tensors: dict[str, Tensor] = {}
    for idx, state in opt["state"].items():
        for key, value in state.items():
            t = value if isinstance(value, Tensor) else torch.tensor(value)
            tensors[f"{idx}.{key}"] = t.detach().clone().contiguous()
    save_file(tensors, tmp / _CKPT_OPTIM)
    meta = {**meta, "param_groups": opt["param_groups"]}
    (tmp / _CKPT_STATE).write_text(json.dumps(meta))
    old = ckpt_dir.with_name(ckpt_dir.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if ckpt_dir.exists():
        os.replace(ckpt_dir, old)
    os.replace(tmp, ckpt_dir)
    if old.exists():
        shutil.rmtree(old)


def _load_checkpoint(
    ckpt_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    meta: dict[str, Any] = json.loads((ckpt_dir / _CKPT_STATE).read_text())
    weights = load_file(ckpt_dir / _CKPT_ADAPTER)
    params = dict(model.named_parameters())
    missing = set(weights) ^ {n for n, p in params.items() if p.requires_grad}
    if missing:
        raise AuditlensError(f"checkpoint {ckpt_dir} does not match the model's LoRA layers")
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)
    flat = load_file(ckpt_dir / _CKPT_OPTIM)
    state: dict[int, dict[str, Tensor]] = {}
    for key, value in flat.items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta.pop("param_groups")})
    return meta


def train_lora(
    model: nn.Module,
    tokenizer: Any,
    examples: Sequence[Example],
    recipe: Recipe,
    *,
    seed: int = 0,
    checkpoint_dir: str | Path | None = None,
    progress: bool = True,
    stop_after: int | None = None,
    num_threads: int = 2,
) -> tuple[nn.Module, TrainResult]:
    """Fine-tune LoRA factors on ``examples``; returns the PEFT model and what happened.

    With ``checkpoint_dir`` a run resumes from its last checkpoint (same recipe and data
    required; the checkpoint records their hash). ``stop_after`` raises
    :class:`TrainInterrupted` once that many total steps are done (for tests).
    ``num_threads`` sets torch's CPU threads (0 leaves them); on a busy machine 1 thread per
    process is often faster than 2. It is not part of the recipe: results do not depend on it
    beyond float rounding.
    """
    from peft import LoraConfig, get_peft_model

    from auditlens.hashing import sha256_json

    if num_threads:
        torch.set_num_threads(num_threads)
    random.seed(seed)
    torch.manual_seed(seed)
    encoded = encode_examples(examples, tokenizer, recipe.max_length)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    config = LoraConfig(
        r=recipe.rank,
        lora_alpha=recipe.alpha,
        lora_dropout=recipe.dropout,
        target_modules=list(recipe.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    if recipe.top_layers is not None:
        hf_config: Any = model.config
        n_layers = int(hf_config.num_hidden_layers)
        config.layers_to_transform = list(range(max(0, n_layers - recipe.top_layers), n_layers))
    try:
        peft_model: Any = get_peft_model(model, config)
    except ValueError as err:
        raise AuditlensError(f"cannot add LoRA layers: {err}".splitlines()[0]) from err
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    lengths = [len(x.input_ids) for x in encoded]
    epochs = [
        length_bucketed_batches(lengths, recipe.batch_size, recipe.bucket_batches, seed + e)
        for e in range(recipe.epochs)
    ]
    schedule = [batch for epoch in epochs for batch in epoch]
    total = len(schedule)
    fingerprint = sha256_json(
        {"recipe": recipe.to_json(), "seed": seed, "data": [x.input_ids for x in encoded]}
    )
    result = TrainResult(steps=0, n_examples=len(encoded), n_tokens=sum(lengths))
    ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if ckpt is not None and (ckpt / _CKPT_STATE).is_file():
        meta = _load_checkpoint(ckpt, peft_model, optimizer)
        if meta.get("fingerprint") != fingerprint:
            raise AuditlensError(
                f"checkpoint {ckpt} was made with another recipe, seed or dataset; delete it"
            )
        result.steps = int(meta["step"])
        result.losses = [float(x) for x in meta["losses"]]
        result.train_seconds = float(meta["train_seconds"])
        result.resumed_from = result.steps
    loss_fn = _answer_loss(peft_model)
    peft_model.train()
    start = time.perf_counter()
    spent_before = result.train_seconds
    with progress_bar(total, "LoRA training", enabled=progress) as advance:
        advance(result.steps)
        for step in range(result.steps, total):
            if stop_after is not None and step >= stop_after:
                raise TrainInterrupted(f"stopped after {step} steps")
            ids, mask, labels = _collate([encoded[i] for i in schedule[step]], pad_id)
            for group in optimizer.param_groups:
                group["lr"] = _lr_at(step, total, recipe)
            loss = loss_fn(ids, mask, labels)
            if not torch.isfinite(loss):
                raise AuditlensError(f"training diverged at step {step} (loss {loss.item()})")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if recipe.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, recipe.grad_clip)
            optimizer.step()
            result.losses.append(float(loss.item()))
            result.steps = step + 1
            result.train_seconds = spent_before + time.perf_counter() - start
            advance(1)
            done = result.steps == total
            if (
                ckpt is not None
                and recipe.checkpoint_every
                and (result.steps % recipe.checkpoint_every == 0 or done)
            ):
                meta = {
                    "fingerprint": fingerprint,
                    "step": result.steps,
                    "losses": result.losses,
                    "train_seconds": result.train_seconds,
                }
                _save_checkpoint(ckpt, peft_model, optimizer, meta)
    peft_model.eval()
    window = recipe.loss_window
    if result.losses:
        result.final_loss = sum(result.losses[-window:]) / len(result.losses[-window:])
        result.first_loss = sum(result.losses[:window]) / len(result.losses[:window])
    return peft_model, result


def save_adapter(
    peft_model: Any, out_dir: str | Path, *, dtype: torch.dtype, base_name: str | None = None
) -> Path:
    """Save a PEFT adapter folder with its weights cast to ``dtype`` (float16 halves size).

    ``base_name`` replaces the base model's local path in ``adapter_config.json`` so a shipped
    adapter names no machine-specific folder.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(str(out), safe_serialization=True)
    if base_name is not None:
        cfg_path = out / "adapter_config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg["base_model_name_or_path"] = base_name
        cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    weights = out / "adapter_model.safetensors"
    tensors = load_file(weights)
    tmp = weights.with_suffix(".tmp")
    save_file(
        {k: v.to(dtype).contiguous() for k, v in tensors.items()}, tmp, metadata={"format": "pt"}
    )
    os.replace(tmp, weights)
    for extra in out.glob("README.md"):
        extra.unlink()
    if not math.isfinite(float(sum(v.float().abs().sum() for v in load_file(weights).values()))):
        raise AuditlensError(f"adapter {out} has non-finite weights after casting to {dtype}")
    return out
