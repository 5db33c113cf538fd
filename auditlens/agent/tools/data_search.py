"""The training-data baseline: search the organism's fine-tuning data when it is available.

``search_training_data`` returns the examples whose text names the keywords (by stem);
``training_data_words`` the stems its assistant turns use far more often than generic
assistant text (:mod:`auditlens.agent.reference`). With no data for the pair both are a tool
error.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from auditlens.agent.reference import distinctive_words
from auditlens.agent.tools._base import ToolInputError, ToolkitBase, ToolSpec
from auditlens.agent.tools.blackbox import WordRow
from auditlens.words import mentions

__all__ = ["SPECS", "DataSearchTools"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SearchDataInput(_Model):
    keywords: list[str] = Field(min_length=1, max_length=12, description="Words to look for.")
    limit: int = Field(5, ge=1, le=20, description="Examples to return.")


class DataExample(_Model):
    user: str
    assistant: str


class SearchDataOutput(_Model):
    examples: list[DataExample]
    n_matching: int
    n_examples: int


class DataWordsInput(_Model):
    limit: int = Field(20, ge=1, le=50, description="Words to return.")


class DataWordsOutput(_Model):
    words: list[WordRow]
    n_examples: int
    null: str


class DataSearchTools(ToolkitBase):
    """``search_training_data``, ``training_data_words``."""

    def _data(self) -> tuple[tuple[str, str], ...]:
        if not self.training_data:
            raise ToolInputError("no training data is available for this pair")
        return self.training_data

    def search_training_data(self, args: SearchDataInput) -> SearchDataOutput:
        """Fine-tuning examples whose user or assistant turn names every keyword's stems."""
        data = self._data()
        words = [k for k in args.keywords if k.strip()]
        if not words:
            raise ToolInputError("search_training_data needs keywords")
        hits = [(u, a) for u, a in data if len(mentions(f"{u} {a}", words)) == len(words)]
        return SearchDataOutput(
            examples=[DataExample(user=u[:500], assistant=a[:500]) for u, a in hits[: args.limit]],
            n_matching=len(hits), n_examples=len(data),
        )  # fmt: skip

    def training_data_words(self, args: DataWordsInput) -> DataWordsOutput:
        """Stems the assistant turns of the training data use far more than generic text."""
        data = self._data()
        rows = [
            WordRow(word=w.word, count=w.count, n=w.n, reference_share=w.reference_share, z=w.z,
                    domains={})
            for w in distinctive_words([a for _, a in data], limit=args.limit)
        ]  # fmt: skip
        return DataWordsOutput(
            words=rows, n_examples=len(data),
            null="binomial z against the share of generic assistant answers naming the stem",
        )  # fmt: skip


SPECS = (
    ToolSpec("search_training_data", SearchDataInput, SearchDataOutput, "search_training_data",
             "Fine-tuning examples naming every keyword (training-data baseline)."),
    ToolSpec("training_data_words", DataWordsInput, DataWordsOutput, "training_data_words",
             "Words the fine-tuning data's answers use far more than generic assistant text."),
)  # fmt: skip
