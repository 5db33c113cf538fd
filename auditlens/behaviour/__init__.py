"""auditlens.behaviour: black-box behaviour checks of a pair, each against the base model.

Each check generates (or scores) on both sides of the pair with the same prompts and tests
the difference with a paired statistic; the base model's answers are the matched null:

- :mod:`~auditlens.behaviour.code`: insecure code on coding requests (Bandit, McNemar z);
- :mod:`~auditlens.behaviour.likelihood`: the likelihood contrast (preference for the
  insecure over the secure solution, no generation);
- :mod:`~auditlens.behaviour.free_form`: answers to open questions, read by a text scorer;
- :mod:`~auditlens.behaviour.checks`: checks generic over a hypothesis (the mention rate of
  its keywords; parse-aware, MEDIUM/HIGH code security), chosen by the audit's discovery;
- :mod:`~auditlens.behaviour.features`: a pre-declared panel of answer surface features
  (length, casing, lists, links, requests, refusals ...), paired tests, Holm-corrected.

Each module's face is ``run(pair, inputs, settings) -> result`` and ``evidence(result)``.
The task data (code tasks, questions) comes from the caller, e.g. the testbed.
"""

from auditlens.behaviour import checks, code, features, free_form, likelihood

__all__ = ["checks", "code", "features", "free_form", "likelihood"]
