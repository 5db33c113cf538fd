"""The audit's evidence steps, one module per family.

Each module exposes ``run(ctx: AuditContext) -> StepOutput`` (see :mod:`auditlens.pipeline`).
A step measures its statistics *and* their null controls, and returns:

- ``findings``: one :class:`~auditlens.reports.findings.Finding` per statistic. A finding that
  bears on misalignment (not just on "how much changed") sets ``contributes=True`` and an
  ``effect_size`` that is a z-like score against its null control, signed so that positive
  means "more concerning than the control"; the misalignment score
  (:mod:`auditlens.scoring.misalignment`) is built only from those.
- ``sections``: the report's building blocks (plots, tables, generations), all text untrusted.
- ``data``: small JSON for later steps (e.g. ``layers`` gives ``peak_layer``).

Artifacts go under ``ctx.artifact_dir(step_name)``; finding artifact paths are relative to
the output folder (``artifacts/<step>/...``).
"""

__all__: list[str] = []
