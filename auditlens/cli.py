"""The ``auditlens`` command line: audit, harvest and friends.

User errors print one line on stderr and exit with code 2; ``--debug`` shows tracebacks.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from auditlens.errors import AuditlensError

__all__ = ["app", "main"]

app = typer.Typer(
    name="auditlens",
    help="White-box alignment auditing: diff a fine-tuned model against its base.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
_STATE = {"debug": False}

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
DownloadOpt = Annotated[
    bool, typer.Option("--allow-download", help="Allow fetching models from the HF Hub.")
]


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
) -> None:
    """auditlens: model diffing, probes and latent adversaries in one report."""
    _STATE["debug"] = debug
    logging.basicConfig(level=logging.INFO if debug else logging.WARNING, format="%(message)s")


def _load(
    base: str,
    finetuned: str | None,
    adapter: str | None,
    device: str | None,
    dtype: str,
    allow_download: bool,
) -> object:
    from auditlens.models import load_pair

    with console.status("loading models"):
        return load_pair(
            base,
            finetuned,
            adapter,
            device=device,
            dtype=dtype,
            allow_download=allow_download,
        )


def _default_adapter(base: str, finetuned: str | None, adapter: str | None) -> str | None:
    """With no model arguments, audit the base against the shipped demo organism if present."""
    from auditlens.embedded import EMBEDDED_NAME

    if finetuned or adapter or base != EMBEDDED_NAME:
        return adapter
    from auditlens.testbed import default_audit_adapter

    return default_audit_adapter()


@app.command()
def audit(
    out: Annotated[Path, typer.Option("--out", help="Output folder for report.html etc.")],
    base: BaseOpt = "smollm2-135m-instruct",
    finetuned: FinetunedOpt = None,
    adapter: AdapterOpt = None,
    budget: Annotated[str, typer.Option("--budget", help="fast, standard or thorough.")] = "fast",
    prompts: Annotated[
        str, typer.Option("--prompts", help="Prompt set: built-in name or JSONL file.")
    ] = "generic_chat",
    device: DeviceOpt = None,
    dtype: DtypeOpt = "float32",
    allow_download: DownloadOpt = False,
) -> None:
    """Audit a fine-tuned model against its base and write report.html + findings.json."""
    from auditlens.pipeline import BUDGETS
    from auditlens.pipeline import audit as run_audit

    if budget not in BUDGETS:
        raise AuditlensError(f"unknown budget {budget!r}; choose {', '.join(BUDGETS)}")
    adapter = _default_adapter(base, finetuned, adapter)
    pair = _load(base, finetuned, adapter, device, dtype, allow_download)
    report = run_audit(pair, out, budget=budget, prompts=prompts)  # type: ignore[arg-type]
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
    base: BaseOpt = "smollm2-135m-instruct",
    finetuned: FinetunedOpt = None,
    adapter: AdapterOpt = None,
    mask: Annotated[str, typer.Option("--mask", help="all, assistant or last_k.")] = "all",
    last_k: Annotated[int, typer.Option("--k", help="k for --mask last_k.")] = 1,
    store_dtype: Annotated[
        str, typer.Option("--store-dtype", help="float32, float16 or bfloat16.")
    ] = "float32",
    batch_size: Annotated[int, typer.Option("--batch-size")] = 8,
    max_length: Annotated[int, typer.Option("--max-length")] = 512,
    backend: Annotated[str, typer.Option("--backend", help="nnsight or transformer_lens.")] = (
        "nnsight"
    ),
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Discard an existing store.")] = (
        False
    ),
    device: DeviceOpt = None,
    dtype: DtypeOpt = "float32",
    allow_download: DownloadOpt = False,
    part: Annotated[
        str | None,
        typer.Option(
            "--slice", help="Harvest only slice i/n of the prompts (merge: harvest-merge)."
        ),
    ] = None,
) -> None:
    """Harvest paired activations into a resumable safetensors store."""
    from auditlens.datasets import MaskSpec, load_prompts
    from auditlens.harvest import harvest as run_harvest
    from auditlens.harvest import parse_slice, slice_range

    pair = _load(base, finetuned, adapter, device, dtype, allow_download)
    prompt_range = None
    if part is not None:
        n_prompts = len(load_prompts(prompts))
        prompt_range = slice_range(n_prompts, *parse_slice(part), batch_size * 8)
    store = run_harvest(
        pair,  # type: ignore[arg-type]
        prompts,
        sites,
        out,
        batch_size=batch_size,
        dtype=store_dtype,
        mask=MaskSpec(mask, last_k),  # type: ignore[arg-type]
        max_length=max_length,
        backend=backend,
        overwrite=overwrite,
        prompt_range=prompt_range,
    )
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
    from auditlens.store import merge_stores

    store = merge_stores(sources, out, overwrite=overwrite)
    typer.echo(f"{store.n_tokens} tokens at {len(store.sites)} sites in {out}")


@app.command()
def mcp(
    workspace: Annotated[
        Path, typer.Option("--workspace", help="Folder the tools may read and write.")
    ],
    base: BaseOpt = "smollm2-135m-instruct",
    finetuned: FinetunedOpt = None,
    adapter: AdapterOpt = None,
    limits: Annotated[
        Path | None, typer.Option("--limits", help="JSON file overriding the tool limits.")
    ] = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = "float32",
    allow_download: DownloadOpt = False,
) -> None:
    """Serve the auditing tools to an agent over MCP (stdio)."""
    from auditlens.agent.server import load_limits, serve

    adapter = _default_adapter(base, finetuned, adapter)
    serve(
        base,
        finetuned,
        adapter,
        workspace,
        device,
        dtype,
        load_limits(limits),
        allow_download=allow_download,
    )


bench_app = typer.Typer(help="Benchmarks: detection on the testbed.", no_args_is_help=True)


@bench_app.command("testbed")
def bench_testbed(
    out: Annotated[Path, typer.Option("--out", help="Folder for the per-pair audits.")] = Path(
        "out/testbed"
    ),
    budget: Annotated[str, typer.Option("--budget", help="fast, standard or thorough.")] = "fast",
    organisms: Annotated[
        str | None,
        typer.Option("--organisms", help="Comma-separated pairs (default: all + base-vs-base)."),
    ] = None,
    scripted: Annotated[
        bool, typer.Option("--scripted/--no-scripted", help="Also run the scripted auditor.")
    ] = True,
    docs: Annotated[
        list[Path] | None,
        typer.Option("--docs", help="Markdown file(s) whose bench:testbed tables to rewrite."),
    ] = None,
) -> None:
    """Audit every shipped organism and base vs base; report AUROCs overall and per family."""
    from auditlens.pipeline import BUDGETS
    from auditlens.testbed.bench import render_tables, rewrite_marked, run_testbed

    if budget not in BUDGETS:
        raise AuditlensError(f"unknown budget {budget!r}; choose {', '.join(BUDGETS)}")
    names = [n.strip() for n in organisms.split(",") if n.strip()] if organisms else None
    result = run_testbed(out, budget=budget, organisms=names, scripted=scripted)
    tables = render_tables(result)
    for path in docs or []:
        rewrite_marked(path, "testbed", tables)
    typer.echo(tables)


def _register_subcommands() -> None:
    from auditlens.testbed.cli import organisms_app

    app.add_typer(organisms_app, name="organisms")
    app.add_typer(bench_app, name="bench")


_register_subcommands()


def main() -> None:
    """Entry point: run the app, turning user errors into one line and exit code 2."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        app(standalone_mode=False)
    except AuditlensError as err:
        if _STATE["debug"]:
            raise
        typer.echo(f"error: {err}", err=True)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        console.print("aborted")
        sys.exit(130)
    except Exception as err:
        import click

        if isinstance(err, click.exceptions.ClickException):
            err.show()
            sys.exit(2)
        if isinstance(err, click.exceptions.Exit):
            sys.exit(err.exit_code)
        raise


if __name__ == "__main__":
    main()
