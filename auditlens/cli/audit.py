"""``auditlens audit`` and ``auditlens harvest``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from auditlens.audit import DEFAULT_OUT, demo_adapter, resolve_budget
from auditlens.audit import audit as run_audit
from auditlens.audit.outdir import OutLock, check_out_dir
from auditlens.audit.pipeline import prompts_cut_notice
from auditlens.audit.reference import reference_for
from auditlens.cli._common import (
    AdapterOpt,
    BaseOpt,
    DeviceMapOpt,
    DeviceOpt,
    DownloadOpt,
    DtypeOpt,
    FinetunedOpt,
    ReferenceOpt,
    app,
    console,
    load,
)
from auditlens.datasets import MaskSpec, load_prompts
from auditlens.embedded import EMBEDDED_NAME
from auditlens.harvest import harvest as run_harvest
from auditlens.harvest import parse_slice, slice_range
from auditlens.store import merge_stores

__all__ = ["default_adapter"]


def default_adapter(base: str, finetuned: str | None, adapter: str | None) -> str | None:
    """With no model arguments, the demo pair: the base against ``organism:insecure`` (as
    ``auditlens.audit()`` with no pair)."""
    if finetuned or adapter or base != EMBEDDED_NAME:
        return adapter
    return demo_adapter()


@app.command()
def audit(
    out: Annotated[Path, typer.Option("--out", help="Output folder for report.html etc.")] = Path(
        DEFAULT_OUT
    ),
    base: BaseOpt = EMBEDDED_NAME,
    finetuned: FinetunedOpt = None,
    adapter: AdapterOpt = None,
    budget: Annotated[str, typer.Option("--budget", help="fast, standard or thorough.")] = "fast",
    prompts: Annotated[
        str, typer.Option("--prompts", help="Prompt set: built-in name or JSONL file.")
    ] = "generic_chat",
    device: DeviceOpt = None,
    dtype: DtypeOpt = "float32",
    device_map: DeviceMapOpt = None,
    allow_download: DownloadOpt = False,
    reference: ReferenceOpt = None,
) -> None:
    """Audit a fine-tuned model against its base and write report.html + findings.json.

    With no model arguments it audits the demo pair: the embedded base against the testbed's
    organism:insecure (base vs base if that organism is not installed).
    """
    resolve_budget(budget)  # a bad budget is a user error before any model loads
    reference_for(budget, reference)  # so is a bad reference file
    adapter = default_adapter(base, finetuned, adapter)
    with OutLock(check_out_dir(out)):  # writable, and no other audit in it, before loading
        pair = load(base, finetuned, adapter, device, dtype, allow_download, device_map)
        report = run_audit(pair, out, budget=budget, prompts=prompts, reference=reference)  # type: ignore[arg-type]
    for notice in report.findings.notices:
        console.print(f"[yellow]notice:[/] {notice}")
    console.print(f"[bold]verdict:[/] {report.findings.verdict}")
    typer.echo(str(out / "report.html"))


@app.command()
def harvest(
    out: Annotated[Path, typer.Option("--out", help="Folder for the activation store.")],
    sites: Annotated[str, typer.Option("--sites", help="Comma-separated canonical site names.")],
    prompts: Annotated[str, typer.Option("--prompts", help="Built-in name or JSONL file.")] = (
        "generic_chat"
    ),
    base: BaseOpt = EMBEDDED_NAME,
    finetuned: FinetunedOpt = None,
    adapter: AdapterOpt = None,
    mask: Annotated[str, typer.Option("--mask", help="all, assistant or last_k.")] = "all",
    last_k: Annotated[int, typer.Option("--k", help="k for --mask last_k.")] = 1,
    store_dtype: Annotated[
        str, typer.Option("--store-dtype", help="float32, float16 or bfloat16.")
    ] = "float32",
    batch_size: Annotated[int, typer.Option("--batch-size")] = 8,
    max_length: Annotated[int, typer.Option("--max-length")] = 512,
    backend: Annotated[
        str, typer.Option("--backend", help="nnsight, transformer_lens or torch.")
    ] = "nnsight",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Discard an existing store.")] = (
        False
    ),
    device: DeviceOpt = None,
    dtype: DtypeOpt = "float32",
    device_map: DeviceMapOpt = None,
    allow_download: DownloadOpt = False,
    part: Annotated[
        str | None,
        typer.Option(
            "--slice", help="Harvest only slice i/n of the prompts (merge: harvest-merge)."
        ),
    ] = None,
) -> None:
    """Harvest paired activations into a resumable safetensors store."""
    check_out_dir(out)  # a file or an unwritable folder: before any model loads
    pair = load(base, finetuned, adapter, device, dtype, allow_download, device_map)
    prompt_range = None
    if part is not None:
        prompt_range = slice_range(len(load_prompts(prompts)), *parse_slice(part), batch_size * 8)
    store = run_harvest(
        pair, prompts, sites, out, batch_size=batch_size, dtype=store_dtype,
        mask=MaskSpec(mask, last_k),  # type: ignore[arg-type]
        max_length=max_length, backend=backend, overwrite=overwrite, prompt_range=prompt_range,
    )  # fmt: skip
    notice = prompts_cut_notice(prompts, pair.tokenizer, max_length, "--max-length")
    if notice:
        console.print(f"[yellow]notice:[/] {notice}")
    typer.echo(f"{store.n_tokens} tokens at {len(store.sites)} sites in {out}")


@app.command("harvest-merge")
def harvest_merge(
    out: Annotated[Path, typer.Option("--out", help="Folder for the merged store.")],
    sources: Annotated[list[Path], typer.Argument(help="Slice stores (harvest --slice i/n).")],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a non-empty --out.")] = (
        False
    ),
) -> None:
    """Merge slice stores harvested by several processes or machines into one store."""
    store = merge_stores(sources, out, overwrite=overwrite)
    typer.echo(f"{store.n_tokens} tokens at {len(store.sites)} sites in {out}")
