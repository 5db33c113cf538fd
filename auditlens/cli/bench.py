"""``auditlens bench testbed``: the audit of every organism, AUROC of the score;
``auditlens bench reference``: the benign reference population the score is standardised on;
``auditlens bench adl-reference``: the benign fine-tunes' ADL vectors the ADL is read against."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated

import typer

from auditlens.agent.sweep import DEFAULT_SUBSETS, render_game_tables, run_sweep
from auditlens.audit import resolve_budget
from auditlens.audit.reference import reference_for
from auditlens.cli._common import (
    BaseOpt,
    DeviceOpt,
    DownloadOpt,
    DtypeOpt,
    ReferenceOpt,
    app,
)
from auditlens.embedded import EMBEDDED_NAME
from auditlens.errors import AuditlensError
from auditlens.testbed.bench import BASE_VS_BASE, render_tables, rewrite_marked, run_testbed

__all__ = ["bench_app"]

bench_app = typer.Typer(
    help="Benchmarks: detection and the auditing game on the testbed.", no_args_is_help=True
)


def _names(organisms: str | None) -> list[str] | None:
    """A comma-separated ``--organisms`` value as names (None: the default set)."""
    return [n.strip() for n in organisms.split(",") if n.strip()] if organisms else None


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
    split: Annotated[
        str,
        typer.Option("--split", help="all, dev (to fit thresholds) or test (report only)."),
    ] = "all",
    scripted: Annotated[
        bool, typer.Option("--scripted/--no-scripted", help="Also run the scripted auditor.")
    ] = True,
    docs: Annotated[
        list[Path] | None,
        typer.Option("--docs", help="Markdown file(s) whose bench:testbed tables to rewrite."),
    ] = None,
    reference: ReferenceOpt = None,
) -> None:
    """Audit every shipped organism and base vs base; report AUROCs on dev and test apart and
    per family (base vs base is reported as a control, never counted)."""
    resolve_budget(budget)
    reference_for(budget, reference)  # a bad reference file: before any audit
    names = _names(organisms)
    if split not in ("all", "dev", "test"):
        raise AuditlensError(f"--split must be all, dev or test, not {split!r}")
    if split != "all" and names is None:
        from auditlens.testbed.organisms import shipped_organisms
        from auditlens.testbed.splits import load_splits

        shipped = set(shipped_organisms())
        names = [BASE_VS_BASE] + [n for n in load_splits()[split] if n in shipped]
    result = run_testbed(
        out, budget=budget, organisms=names, scripted=scripted, reference=reference
    )
    tables = render_tables(result)
    for path in docs or []:
        rewrite_marked(path, "testbed", tables)
    typer.echo(tables)


@bench_app.command("game")
def bench_game(
    out: Annotated[Path, typer.Option("--out", help="Folder for the sweep's records.")] = Path(
        "out/game"
    ),
    budget: Annotated[str, typer.Option("--budget", help="fast or standard.")] = "fast",
    split: Annotated[str, typer.Option("--split", help="dev, test or all.")] = "all",
    subsets: Annotated[
        str,
        typer.Option(
            "--subsets",
            help="Comma-separated tool subsets, families joined by '+' "
            "(default: " + ",".join(DEFAULT_SUBSETS) + ").",
        ),
    ] = ",".join(DEFAULT_SUBSETS),
    organisms: Annotated[
        str | None,
        typer.Option("--organisms", help="Comma-separated organisms (default: the split's)."),
    ] = None,
    docs: Annotated[
        list[Path] | None,
        typer.Option("--docs", help="Markdown file(s) whose bench:game tables to rewrite."),
    ] = None,
    audits: Annotated[
        Path | None,
        typer.Option(
            "--audits",
            help="A `bench testbed --out` folder of the same code and budget: list_hypotheses "
            "reuses its cached steps.",
        ),
    ] = None,
) -> None:
    """The affordance sweep: the built-in investigator on every shipped organism (and base vs
    base) per tool subset, graded by the auditing game; dev and test apart."""
    names = _names(organisms)
    chosen = [s.strip() for s in subsets.split(",") if s.strip()]
    records = run_sweep(out, budget=budget, split=split, subsets=chosen, organisms=names,
                        audits=audits)  # fmt: skip
    tables = render_game_tables(records, budget)
    for path in docs or []:
        rewrite_marked(path, "game", tables)
    typer.echo(tables)


@bench_app.command("reference")
def bench_reference(
    out: Annotated[Path, typer.Option("--out", help="Folder for the per-pair audits.")] = Path(
        "out/reference"
    ),
    budget: Annotated[str, typer.Option("--budget", help="fast, standard or thorough.")] = "fast",
    path: Annotated[
        Path | None,
        typer.Option("--path", help="Reference file (default: the shipped one for the budget)."),
    ] = None,
    organisms: Annotated[
        str | None,
        typer.Option("--organisms", help="Comma-separated benign organisms (default: benign dev)."),
    ] = None,
    base: BaseOpt = EMBEDDED_NAME,
    benign: Annotated[
        str | None,
        typer.Option(
            "--benign",
            help="Comma-separated benign fine-tunes of --base of your own (adapter folders or "
            "models), instead of the organisms; needs --path.",
        ),
    ] = None,
    refresh: Annotated[
        bool,
        typer.Option(
            "--refresh",
            help="Bring an older reference up to date: re-run only the steps whose "
            "statistics changed since its version, on the pairs it holds.",
        ),
    ] = False,
    device: DeviceOpt = None,
    dtype: DtypeOpt = "float32",
    allow_download: DownloadOpt = False,
) -> None:
    """Audit base vs base and the benign dev organisms (or your own benign fine-tunes), write
    the benign reference (resumable: pairs already in the file are skipped)."""
    from auditlens.models import load_pair
    from auditlens.testbed.bench.reference import build_reference, refresh_reference

    resolve_budget(budget)
    names = _names(organisms)
    load = functools.partial(load_pair, device=device, dtype=dtype, allow_download=allow_download)
    if refresh:
        if names is not None:
            raise AuditlensError("--refresh re-measures the pairs the file holds: drop --organisms")
        refresh_reference(out, budget=budget, path=path, echo=typer.echo, base=base,
                          benign=_names(benign), load=load)  # fmt: skip
        return
    build_reference(out, budget=budget, path=path, names=names, echo=typer.echo, base=base,
                    benign=_names(benign), load=load)  # fmt: skip


@bench_app.command("adl-reference")
def bench_adl_reference(
    path: Annotated[
        Path | None,
        typer.Option("--path", help="Reference file (default: the shipped one)."),
    ] = None,
    organisms: Annotated[
        str | None,
        typer.Option("--organisms", help="Comma-separated benign organisms (default: benign dev)."),
    ] = None,
) -> None:
    """Measure the benign dev organisms' ADL δ at every layer, write the ADL reference
    (resumable: pairs already in the file are skipped)."""
    from auditlens.testbed.bench.reference import build_adl_reference

    names = _names(organisms)
    build_adl_reference(path=path, names=names, echo=typer.echo)


app.add_typer(bench_app, name="bench")
