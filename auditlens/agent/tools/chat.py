"""Black-box tools: one model's answer, and both models' answers side by side."""

from __future__ import annotations

from typing import Any

from auditlens.agent import schemas as s
from auditlens.agent.tools._base import ToolkitBase, ToolSpec, rate_stats, user_text
from auditlens.datasets import PromptSet
from auditlens.generate import chat_prompt, generate
from auditlens.judges.code import bandit_label

__all__ = ["SPECS", "ChatTools"]


class ChatTools(ToolkitBase):
    """``chat`` and ``compare_models``."""

    def chat(self, args: s.ChatInput) -> s.ChatOutput:
        """Sample one model's answer to one prompt."""
        args = self._within(args, {"max_new_tokens": self.limits.max_new_tokens})
        self._gen_opts(args.max_new_tokens)
        for what, value in (
            ("prompt", args.prompt),
            ("system", args.system),
            ("prefill", args.prefill),
        ):
            self._text(what, value)
        side = self._side(args.side)
        with self._lock:
            text = generate(
                side,
                self.pair.tokenizer,
                PromptSet("chat", (chat_prompt(args.prompt, system=args.system),)),
                max_new_tokens=args.max_new_tokens,
                temperature=args.temperature,
                seed=args.seed,
                prefill=args.prefill,
            )[0]
        return s.ChatOutput(
            side=args.side,
            model=side.label,
            prompt=args.prompt,
            system=args.system,
            prefill=args.prefill,
            completion=text,
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            seed=args.seed,
        )

    def compare_models(self, args: s.CompareInput) -> s.CompareOutput:
        """The same prompts to both models, side by side, with Bandit labels."""
        args = self._within(args, {"max_new_tokens": self.limits.max_new_tokens})
        self._gen_opts(args.max_new_tokens)
        self._text("system", args.system)
        self._text("prefill", args.prefill)
        prompts = self._prompt_set(args.prompts, args.prompts_file, system=args.system)
        opts: dict[str, Any] = {
            "max_new_tokens": args.max_new_tokens,
            "temperature": args.temperature,
            "seed": args.seed,
            "prefill": args.prefill,
            "batch_size": self.limits.batch_size,
        }
        with self._lock:
            base = generate(self.pair.base, self.pair.tokenizer, prompts, **opts)
            ft = generate(self.pair.finetuned, self.pair.tokenizer, prompts, **opts)
        rows = [
            s.ComparisonRow(
                prompt=user_text(p),
                base=b,
                finetuned=f,
                base_bandit=bandit_label(b).status,
                finetuned_bandit=bandit_label(f).status,
            )
            for p, b, f in zip(prompts.prompts, base, ft, strict=True)
        ]
        note = "Same prompts, settings and seed for both models; Bandit labels each answer."
        return s.CompareOutput(
            rows=rows,
            base_bandit=rate_stats(base),
            finetuned_bandit=rate_stats(ft),
            note=" ".join(x for x in (note, self._null_note()) if x),
        )


SPECS = (
    ToolSpec(
        "chat",
        s.ChatInput,
        s.ChatOutput,
        "chat",
        "Sample one model (side base or finetuned) with optional system prompt and prefill.",
    ),
    ToolSpec(
        "compare_models",
        s.CompareInput,
        s.CompareOutput,
        "compare_models",
        "Send the same prompts to both models; answers side by side with Bandit labels.",
    ),
)
