"""The audit tool: run the whole audit into the workspace and summarise its findings."""

from __future__ import annotations

from pathlib import Path

from auditlens.agent import schemas as s
from auditlens.agent.tools._base import LimitError, ToolkitBase, ToolSpec, finite
from auditlens.agent.workspace import check_name
from auditlens.audit import audit

__all__ = ["SPECS", "AuditTools"]


class AuditTools(ToolkitBase):
    """``run_audit``."""

    def run_audit(self, args: s.RunAuditInput) -> s.RunAuditOutput:
        """Run the audit into workspace/audits/NAME (sharing this toolkit's artifact cache)."""
        name = check_name(args.name, "audit name")
        if args.budget not in self.limits.audit_budgets:
            raise LimitError(
                f"budget {args.budget!r} is not allowed; allowed: {list(self.limits.audit_budgets)}"
            )
        out = self.workspace.resolve(Path("audits") / name)
        with self._lock:
            report = audit(
                self.pair, out, budget=args.budget, prompts=self.prompts, progress=False,
                cache=self.cache,
            )  # fmt: skip
        found = report.findings
        ranked = sorted(
            found.findings,
            key=lambda f: (not f.contributes, -abs(f.effect_size or 0.0), f.id),
        )
        top = [
            s.AuditFindingBrief(
                id=f.id,
                family=f.family,
                method=f.method,
                site=f.site,
                value=finite(f.value),
                effect_size=finite(f.effect_size),
                summary=f.summary,
            )
            for f in ranked[: args.n_findings]
        ]
        return s.RunAuditOutput(
            name=name,
            report_path=self.workspace.relative(out / "report.html"),
            findings_path=self.workspace.relative(out / "findings.json"),
            score=found.score,
            verdict=found.verdict or "",
            summary=found.summary,
            n_findings=len(found.findings),
            top_findings=top,
            notices=list(found.notices),
        )


SPECS = (
    ToolSpec(
        "run_audit",
        s.RunAuditInput,
        s.RunAuditOutput,
        "run_audit",
        "Run the full audit pipeline; returns score, verdict, top findings, report path.",
    ),
)
