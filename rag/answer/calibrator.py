"""How likely an answer is right: one probability from its features, fitted per model (``bench/verifier.py fit``).

A calibrator is a small JSON file in ``rag/answer/calibrators/`` named after the embedded model it was fitted for
(``qwen2.5-coder-1.5b.json``) and keyed to that model's GGUF by SHA-256: a file fitted for other weights is not
used. It holds a logistic regression (feature means and scales, coefficients, intercept) or gradient-boosted
trees (as arrays), the values that stand in for a feature the backend could not give, the threshold under which
an answer is flagged, and how it was fitted (date, training size, cross-validated AUC). It is read with numpy
alone: scikit-learn is needed to fit one, not to answer.

A model without a calibrator (SmolLM2 until one is fitted, a model behind vLLM, a GGUF given by path) gets
``None``: the answer step falls back to the rule-based checks and the answer says so (``calibrated: false``).

``Calibrator.weakest`` names the feature that pulled the probability down most (for the logistic model, the
coefficient times the scaled deviation from the training mean; for trees, the change in the predicted log-odds
along the answer's path at the splits on that feature), and ``REASONS`` says it in words a reader understands.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from rag.answer.features import Features
from rag.errors import RagError

CALIBRATORS = Path(__file__).resolve().parent / "calibrators"
FORMAT = 1

# For each feature, the reason a low and a high value gives to check an answer, for people.
_HESITANT = "the model hesitated over the words of its answer"
_OFF_TOPIC = "the sentence it answers from is about something other than what you asked"
_LOOSE = "your documents match the question only loosely"
REASONS: dict[str, tuple[str, str]] = {
    "p_min": (_HESITANT, _HESITANT), "p_mean": (_HESITANT, _HESITANT), "p_log_mean": (_HESITANT, _HESITANT),
    "sure": (_HESITANT, _HESITANT),
    "grounded": ("it states a name or number the passages it cites do not contain",) * 2,
    "missing_terms": ("it states a name or number the passages it cites do not contain",) * 2,
    "supported": (_OFF_TOPIC, _OFF_TOPIC), "support_coverage": (_OFF_TOPIC, _OFF_TOPIC),
    "distance": ("the answer stands far from what the question asks about in its sentence",) * 2,
    "evidence": (_LOOSE, _LOOSE), "evidence_dense": (_LOOSE, _LOOSE), "evidence_coverage": (_LOOSE, _LOOSE),
    "cited_rank": ("it rests on a passage that matches the question less well than others",) * 2,
    "cited_score": ("it rests on a passage that matches the question less well than others",) * 2,
    "cited_count": ("it cites no passage", "it cites several passages, none of which clearly answers"),
    "answer_words": ("the answer is very short", "the answer is longer than a direct answer would be"),
    "question_overlap": ("the answer shares few words with the question",
                         "the answer mostly repeats the question"),
    "type_asked": ("the question asks for something that is hard to check",) * 2,
    "type_mismatch": ("the answer is not the kind of thing the question asks for (a name, a date, a number or "
                      "a place)",) * 2,
    "agreement": ("asked a second time, the model gave a different answer",) * 2,
    "consistency": ("asked again, the model gave different answers",) * 2,
    "verbatim": ("the answer is not in the words of the passage it cites",) * 2,
    "repeats_question": ("the answer only repeats words from your question",) * 2,
    "question_fit": ("the answer fits another question better than the one you asked",) * 2,
}
FALLBACK_REASON = "the answer could not be confirmed from your documents"


class CalibratorError(RagError, ValueError):
    """A calibrator file that cannot be read (wrong format version, missing arrays)."""


@dataclass(frozen=True)
class Trees:
    """Gradient-boosted regression trees on the log-odds, as scikit-learn's ``tree_`` arrays."""

    init: float
    learning_rate: float
    trees: list[dict[str, list[Any]]]  # feature, threshold, left, right, value (-1 / -2 mark a leaf)

    def log_odds(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """The score and each feature's share of it (along the path: value after a split minus before)."""
        total, shares = self.init, np.zeros(len(x))
        for tree in self.trees:
            node = 0
            while tree["left"][node] != -1:
                f = tree["feature"][node]
                child = tree["left"][node] if x[f] <= tree["threshold"][node] else tree["right"][node]
                shares[f] += self.learning_rate * (tree["value"][child] - tree["value"][node])
                node = child
            total += self.learning_rate * tree["value"][node]
        return total, shares


@dataclass(frozen=True)
class Calibrator:
    model: str  # the embedded model's name (rag.llm.models)
    gguf_sha256: str
    features: tuple[str, ...]
    impute: np.ndarray  # stands in for a feature that is None
    threshold: float  # p_correct under it: flagged
    kind: str  # "logistic" or "trees"
    mean: np.ndarray | None = None
    scale: np.ndarray | None = None
    coef: np.ndarray | None = None
    intercept: float = 0.0
    trees: Trees | None = None
    meta: dict[str, Any] | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Calibrator:
        if data.get("format") != FORMAT:
            raise CalibratorError(f"calibrator format {data.get('format')!r}, expected {FORMAT}")
        try:
            kind = data["kind"]
            common = {"model": data["model"], "gguf_sha256": data.get("gguf_sha256", ""),
                      "features": tuple(data["features"]), "impute": np.asarray(data["impute"], dtype=float),
                      "threshold": float(data["threshold"]), "kind": kind, "meta": data.get("fit", {})}
            if kind == "logistic":
                return cls(**common, mean=np.asarray(data["mean"], dtype=float),
                           scale=np.asarray(data["scale"], dtype=float), coef=np.asarray(data["coef"], dtype=float),
                           intercept=float(data["intercept"]))
            if kind == "trees":
                t = data["trees"]
                return cls(**common, trees=Trees(float(t["init"]), float(t["learning_rate"]), t["estimators"]))
        except (KeyError, TypeError) as exc:
            raise CalibratorError(f"calibrator file lacks {exc}") from exc
        raise CalibratorError(f"unknown calibrator kind {kind!r}")

    def _row(self, features: Features) -> np.ndarray:
        values = features.to_json()
        x = np.array([math.nan if values.get(name) is None else float(values[name])  # type: ignore[arg-type]
                      for name in self.features])
        return np.where(np.isnan(x), self.impute, x)

    def _score(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        if self.trees is not None:
            return self.trees.log_odds(x)
        assert self.mean is not None and self.scale is not None and self.coef is not None
        shares = self.coef * (x - self.mean) / self.scale
        return self.intercept + float(shares.sum()), shares

    def p_correct(self, features: Features) -> float:
        """The probability that the answer with these features is right, in [0, 1]."""
        z, _ = self._score(self._row(features))
        return 1 / (1 + math.exp(-max(min(z, 50.0), -50.0)))

    def weakest(self, features: Features) -> str:
        """The feature that lowered the probability most (the first one when none lowered it)."""
        x = self._row(features)
        _, shares = self._score(x)
        return self.features[int(np.argmin(shares))]

    def reason(self, features: Features) -> str:
        """Why to check the answer, in plain words: the reason behind the feature that weighed most against it."""
        name = self.weakest(features)
        low, high = REASONS.get(name, (FALLBACK_REASON, FALLBACK_REASON))
        i = self.features.index(name)
        centre = self.mean[i] if self.mean is not None else self.impute[i]
        return high if self._row(features)[i] > centre else low

    @property
    def uses_second_reply(self) -> bool:
        return "agreement" in self.features

    @property
    def uses_samples(self) -> bool:
        return "consistency" in self.features

    @property
    def uses_asked_back(self) -> bool:
        return "question_fit" in self.features


def load(path: Path) -> Calibrator:
    return Calibrator.from_json(json.loads(path.read_text()))


@cache
def calibrator_for(backend: str, model: str) -> Calibrator | None:
    """The calibrator of an embedded model, by its GGUF's name (``LLM.model``), when one was fitted for these very
    weights; None otherwise (another backend, an unknown file, no file, or a file fitted for other weights)."""
    if backend != "embedded":
        return None
    from rag.llm.models import EMBEDDED_MODELS

    spec = next((m for m in EMBEDDED_MODELS.values() if m.file_name.removesuffix(".gguf") == model), None)
    path = CALIBRATORS / f"{spec.name}.json" if spec else None
    if spec is None or path is None or not path.exists():
        return None
    calibrator = load(path)
    if calibrator.gguf_sha256 != spec.sha256:  # fitted for other weights (SmolLM2 pins none: both empty)
        return None
    return calibrator
