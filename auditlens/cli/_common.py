"""The typer app, its global options and the options the commands share."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from auditlens.models import ModelPair, load_pair

__all__ = [
    "STATE",
    "AdapterOpt",
    "BaseOpt",
    "DeviceOpt",
    "DownloadOpt",
    "DtypeOpt",
    "FinetunedOpt",
    "ReferenceOpt",
    "app",
    "console",
    "load",
]

app = typer.Typer(
    name="auditlens",
    help="White-box alignment auditing: diff a fine-tuned model against its base.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
STATE: dict[str, Any] = {"debug": False}

BaseOpt = Annotated[
    str, typer.Option("--base", help="Base model: 'smollm2-135m-instruct', a folder or an HF id.")
]
FinetunedOpt = Annotated[
    str | None, typer.Option("--finetuned", help="Fine-tuned model (folder or HF id).")
]
AdapterOpt = Annotated[
    str | None,
    typer.Option("--adapter", help="PEFT adapter folder applied to the base, or organism:NAME."),
]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="cpu, cuda, cuda:1 ...")]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="float32, bfloat16 or float16.")]
DeviceMapOpt = Annotated[
    str | None,
    typer.Option(
        "--device-map", help="'auto' spreads a model too big for one device (accelerate)."
    ),
]
DownloadOpt = Annotated[
    bool, typer.Option("--allow-download", help="Allow fetching models from the HF Hub.")
]
ReferenceOpt = Annotated[
    Path | None,
    typer.Option(
        "--reference",
        help="Benign reference file to score against (default: the one shipped for the budget).",
    ),
]


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
) -> None:
    """auditlens: model diffing, probes and latent adversaries in one report."""
    STATE["debug"] = debug
    logging.basicConfig(level=logging.INFO if debug else logging.WARNING, format="%(message)s")


def load(
    base: str,
    finetuned: str | None,
    adapter: str | None,
    device: str | None,
    dtype: str,
    allow_download: bool,
    device_map: str | None = None,
) -> ModelPair:
    """Load a pair with a status line."""
    with console.status("loading models"):
        return load_pair(
            base, finetuned, adapter, device=device, dtype=dtype, device_map=device_map,
            allow_download=allow_download,
        )  # fmt: skip
