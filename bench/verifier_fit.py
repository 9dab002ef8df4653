"""Fit the answer calibrator on half A's records and judge it on held-out records (``bench/verifier.py``).

``fit``: logistic regression against gradient-boosted trees, each with and without the second decoding's
``agreement``, the sampled replies' ``consistency`` and the question read back, ``question_fit`` (each costs model
time after the answer), compared by the area under the ROC curve of out-of-fold predictions (5-fold stratified
cross-validation, repeated 4 times with different shuffles): trees must win by ``TREES_MARGIN``, and among linear
models within ``NOISE`` of the best the one asking the model again the fewest times is taken. The winner is
refitted on all of half A and written as JSON (``rag/answer/calibrators/<model>.json``); its threshold is chosen on
the out-of-fold predictions: the highest share of wrong answers flagged with at most ``MAX_RIGHT_FLAGGED`` of right
ones flagged (the issue's target is at least 80 % and at most 15 %).

``evaluate``: on each held-out record file, the shipped calibrator against the rule-based checks recorded in the
same run (``old_verified``): AUC, the shares of wrong and of right answers flagged, answers wrong with no warning
as a share of all (answerable) questions, and what withholding leaves; what the shipped recipe reaches when fitted
on the set itself (``within_set``: an upper reference, not a held-out figure); a reliability diagram in ``docs/``.
"""

from __future__ import annotations

import datetime
import json
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rag.answer.features import SAMPLED_REPLIES

if TYPE_CHECKING:
    from rag.answer.calibrator import Calibrator

ROOT = Path(__file__).resolve().parent.parent
MAX_RIGHT_FLAGGED = 0.15
TREES_MARGIN = 0.02  # CV AUC trees must gain over logistic regression to be shipped
WITHIN_SET_WRONG = 20  # fewer wrong answers than this, and cross-validating on a set says little (the second set: 7)
NOISE = 0.005  # CV AUCs closer than this are not told apart (the cheaper model is shipped)
TARGET_WRONG_FLAGGED = 0.80
PLOT = ROOT / "docs" / "verifier-reliability.png"
MODEL = "qwen2.5-coder-1.5b"
# named before any fit from what each measures, not picked by their AUC on these data (docs/verifier.md)
FEW = ["p_min", "p_log_mean", "grounded", "supported", "type_mismatch", "distance", "evidence", "verbatim",
       "repeats_question"]


def read(path: Path) -> list[dict]:
    return completed([json.loads(line) for line in path.open() if line.strip()])


def completed(rows: list[dict]) -> list[dict]:
    """Records with the features added after they were written, computed by ``rag.answer.features``'s own functions
    from what the record keeps (its answer, question and passages; ``bench/verifier.py backfill`` rebuilds the
    passages of records older than that); the label by the rule as it is now (``verifier.relabel``)."""
    from verifier import relabel

    from rag.answer.citations import recite
    from rag.answer.features import agreement, consistency, question_fit, repeats_question, verbatim_share
    from rag.answer.grounding import check_grounding

    for r in rows:
        relabel(r)
        f = r["features"]
        if f is None:
            continue
        if not r.get("recited") and r.get("citations") is not None:  # written before citations were mended
            passages = {c["n"]: c["text"] for c in r["citations"]}
            cited = recite(r["answer"], passages, [c["n"] for c in r["citations"] if c["cited"]], r["question"])
            for c in r["citations"]:
                c["cited"] = c["n"] in cited
            grounding = check_grounding(r["answer"], [passages[n] for n in cited] or passages.values(), r["question"])
            f["grounded"], f["missing_terms"] = float(grounding.verified), float(len(grounding.missing))
            f["cited_count"], f["verbatim"] = float(len(cited)), None  # verbatim: again, below, over these
            r["unverified"], r["recited"] = list(grounding.missing), True
        if f.get("verbatim") is None and r.get("citations") is not None:
            passages = [c["text"] for c in r["citations"]]
            f["verbatim"] = verbatim_share(r["answer"], [c["text"] for c in r["citations"] if c["cited"]] or passages)
        if f.get("repeats_question") is None:
            f["repeats_question"] = float(repeats_question(r["question"], r["answer"]))
        # again from the replies kept, whenever they were written: how replies are compared has changed since
        if r.get("samples"):  # as many as the answer step draws (a record may keep more)
            f["consistency"] = consistency(r["answer"], r["samples"][:SAMPLED_REPLIES])
        if r.get("second_reply") is not None:
            f["agreement"] = agreement(r["answer"], r["second_reply"])
        if r.get("asked_back") is not None:  # bench/verifier.py ask-back
            f["question_fit"] = question_fit(r["asked_back"])
    return rows


def matrix(rows: list[dict], names: list[str]) -> np.ndarray:
    return np.array([[math.nan if r["features"].get(n) is None else float(r["features"][n]) for n in names]
                     for r in rows])


def logistic(c: float) -> object:
    """Logistic regression on standardised features, regularised by ``c``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))


def candidates(names: list[str]) -> dict[str, tuple[object, list[str]]]:
    from sklearn.ensemble import GradientBoostingClassifier

    asked_again = ("agreement", "consistency", "question_fit")  # each costs model time after the answer
    without = [n for n in names if n not in asked_again]
    out: dict[str, tuple[object, list[str]]] = {}
    for c in (0.1, 0.3, 1.0):  # few answers, few wrong: a handful of the strongest signals, fewer weights to fit
        for extra in (["agreement", "consistency"], ["agreement"], ["consistency"], [],
                      ["consistency", "question_fit"], ["question_fit"]):
            label = f"logistic C={c} {len(FEW) + len(extra)} features" + (f" with {'+'.join(extra)}" if extra else "")
            out[label] = (logistic(c), FEW + extra)
    for tag, feats in (("", names), (" without asking the model again", without)):
        for c in (0.1, 0.3, 1.0):
            out[f"logistic C={c}{tag}"] = (logistic(c), feats)
        for depth, n in ((1, 100), (2, 60), (3, 40)):
            out[f"trees depth={depth} n={n}{tag}"] = (GradientBoostingClassifier(
                n_estimators=n, max_depth=depth, learning_rate=0.1, subsample=1.0, random_state=0), feats)
        # slower, shrunk and bagged: fewer wrong answers than features would otherwise be learned by heart
        out[f"trees depth=2 n=150 slow{tag}"] = (GradientBoostingClassifier(
            n_estimators=150, max_depth=2, learning_rate=0.05, subsample=0.8, min_samples_leaf=8, random_state=0),
            feats)
    return out


def generations(features: list[str]) -> int:
    """How many generations after the answer a calibrator on these features needs (reading the question back
    counts as one)."""
    return ("agreement" in features) + SAMPLED_REPLIES * ("consistency" in features) + ("question_fit" in features)


def out_of_fold(model: object, x: np.ndarray, y: np.ndarray, repeats: int = 4) -> tuple[float, np.ndarray]:
    """Mean AUC over repeats of 5-fold CV (fewer folds when fewer wrong answers), and the first repeat's out-of-fold
    probabilities."""
    from sklearn.base import clone
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    aucs, first = [], None
    for seed in range(repeats):
        p = np.zeros(len(y))
        folds = max(2, min(5, int(np.bincount(y).min())))
        for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
            fitted = clone(model).fit(x[train], y[train])
            p[test] = fitted.predict_proba(x[test])[:, 1]
        aucs.append(roc_auc_score(y, p))
        first = p if first is None else first
    return float(np.mean(aucs)), first


def ungrounded(rows: list[dict]) -> np.ndarray:
    """Answers flagged whatever their probability: a name or number that no passage they cite holds."""
    return np.array([r["features"].get("grounded") == 0 for r in rows])


def choose_threshold(p: np.ndarray, y: np.ndarray, flagged: np.ndarray | None = None) -> tuple[float, float, float]:
    """(threshold, wrong flagged, right flagged): the highest threshold that flags at most MAX_RIGHT_FLAGGED of the
    right answers, so the most wrong ones flagged for that budget (where several thresholds flag the same wrong
    answers of the fitting data, the highest leaves the most room for new data's); ``flagged``: answers flagged
    whatever their probability (a name or number no cited passage holds)."""
    best = (0.0, 0.0, 0.0)
    always = np.zeros(len(p), dtype=bool) if flagged is None else flagged
    for t in np.unique(np.round(p, 3)):
        flag = (p < t) | always
        wrong, right = float(np.mean(flag[y == 0])), float(np.mean(flag[y == 1]))
        if right <= MAX_RIGHT_FLAGGED:
            best = (float(t), wrong, right)
    return best


def export(model: object, names: list[str], impute: np.ndarray, threshold: float, fit_info: dict,
           model_name: str = MODEL) -> dict:
    from rag.llm.models import get_model

    data: dict = {"format": 1, "model": model_name, "gguf_sha256": get_model(model_name).sha256, "backend": "embedded",
                  "features": names, "impute": [round(float(v), 6) for v in impute],
                  "threshold": round(threshold, 4), "fit": fit_info}
    if hasattr(model, "estimators_"):  # gradient-boosted trees
        trees = []
        for estimator in model.estimators_[:, 0]:
            t = estimator.tree_
            trees.append({"feature": t.feature.tolist(), "threshold": [round(float(v), 6) for v in t.threshold],
                          "left": t.children_left.tolist(), "right": t.children_right.tolist(),
                          "value": [round(float(v), 6) for v in t.value[:, 0, 0]]})
        x0 = np.zeros((1, len(names)))
        init = float(model.decision_function(x0)[0]) - model.learning_rate * sum(
            float(e.predict(x0)[0]) for e in model.estimators_[:, 0])
        data.update(kind="trees", trees={"init": init, "learning_rate": model.learning_rate, "estimators": trees})
    else:
        scaler, lr = model.steps[0][1], model.steps[1][1]
        data.update(kind="logistic", mean=[round(float(v), 6) for v in scaler.mean_],
                    scale=[round(float(v), 6) for v in scaler.scale_], coef=[round(float(v), 6) for v in lr.coef_[0]],
                    intercept=round(float(lr.intercept_[0]), 6))
    return data


def samples_curve(rows: list[dict], y: np.ndarray, few: list[str]) -> int:
    """How many samples the answer step should draw: for k = 1 .. the samples every record keeps, the CV AUC of
    the nine features and ``consistency`` over k samples, averaged over every choice of k of the seeds (one
    particular set of seeds is luckier or unluckier than another: on half A, three seeds gave 0.85 to 0.90); the
    fewest within NOISE of the best. Printed; SAMPLED_REPLIES is set by hand to what it says."""
    import itertools

    from rag.answer.features import consistency

    kept = min((len(r.get("samples") or []) for r in rows), default=0)
    if kept < 2:
        return kept
    base = matrix(rows, few)
    curve = {}
    for k in range(1, kept + 1):
        aucs = []
        for chosen in itertools.combinations(range(kept), k):
            column = [consistency(r["answer"], [r["samples"][i] for i in chosen]) for r in rows]
            x = np.column_stack([base, column])
            x = np.where(np.isnan(x), np.nanmedian(x, axis=0), x)
            aucs.append(out_of_fold(logistic(0.1), x, y)[0])
        curve[k] = float(np.mean(aucs))
        print(f"  {k} samples: CV AUC {curve[k]:.3f} on average over {len(aucs)} choices of seeds "
              f"({min(aucs):.3f}-{max(aucs):.3f})")
    best = max(curve.values())
    return min(k for k, auc in curve.items() if auc >= best - NOISE)


def fit(records: Path, model_name: str = MODEL) -> None:
    from rag.answer.calibrator import CALIBRATORS, Calibrator
    from rag.answer.features import NAMES, SAMPLE_SEEDS, SAMPLE_TEMPERATURE, Features

    rows = [r for r in read(records) if r["label"] and r["features"]]
    names = list(NAMES)
    y = np.array([r["label"] == "right" for r in rows], dtype=int)
    print(f"half A: {len(rows)} answers, {int((y == 0).sum())} wrong, {int(y.sum())} right")
    print("samples per answer (the nine features and consistency, logistic C=0.1):")
    k = samples_curve(rows, y, FEW)
    print(f"  -> draw {k} (the answer step draws SAMPLED_REPLIES = {SAMPLED_REPLIES})")
    results = {}
    for label, (model, feats) in candidates(names).items():
        x = matrix(rows, feats)
        impute = np.nanmedian(x, axis=0)
        x = np.where(np.isnan(x), impute, x)
        auc, oof = out_of_fold(model, x, y)
        results[label] = (auc, oof, model, feats, impute, x)
        print(f"  {label:40s} CV AUC {auc:.3f}")
    # Logistic regression unless trees beat it clearly: with a few dozen wrong answers at most, AUCs a hundredth
    # apart are noise, and a linear model has a weight per feature, so its reasons are readable.
    # Among linear models within NOISE of the best, the one asking the model again the fewest times after the
    # answer (each sampled reply costs a generation, the second reply one), then the fewest features.
    best_trees = max((k for k in results if k.startswith("trees")), key=lambda k: results[k][0])
    top = max(results[k][0] for k in results if k.startswith("logistic"))
    best_linear = min((k for k in results if k.startswith("logistic") and results[k][0] >= top - NOISE),
                      key=lambda k: (generations(results[k][3]), len(results[k][3]), -results[k][0]))
    winner = best_trees if results[best_trees][0] > results[best_linear][0] + TREES_MARGIN else best_linear
    auc, oof, model, feats, impute, x = results[winner]
    threshold, wrong, right = choose_threshold(oof, y, ungrounded(rows))
    print(f"chosen: {winner} (CV AUC {auc:.3f}); threshold {threshold:.3f} flags {wrong:.0%} of wrong and "
          f"{right:.0%} of right answers out of fold")
    model.fit(x, y)
    seconds = [r.get("second_seconds", 0.0) for r in rows]
    info = {"date": datetime.date.today().isoformat(), "records": str(records.relative_to(ROOT)),
            "training_size": len(rows), "training_wrong": int((y == 0).sum()), "chosen": winner,
            "cv_auc": {k: round(v[0], 4) for k, v in results.items()},
            "threshold_out_of_fold": {"wrong_flagged": round(wrong, 3), "right_flagged": round(right, 3)},
            "second_reply_seconds_mean": round(float(np.mean(seconds)), 2),
            "samples": {"replies": SAMPLED_REPLIES, "temperature": SAMPLE_TEMPERATURE, "seeds": list(SAMPLE_SEEDS)}}
    data = export(model, feats, impute, threshold, info, model_name)
    calibrator = Calibrator.from_json(data)
    ours = np.array([calibrator.p_correct(Features(**{**{n: None for n in NAMES}, **r["features"]})) for r in rows])
    theirs = model.predict_proba(x)[:, 1]
    assert np.allclose(ours, theirs, atol=1e-4), float(np.abs(ours - theirs).max())  # numpy reads it as sklearn does
    CALIBRATORS.mkdir(exist_ok=True)
    out = CALIBRATORS / f"{model_name}.json"
    out.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {out.relative_to(ROOT)} ({out.stat().st_size} bytes)")


def evaluate(paths: list[Path], model_name: str = MODEL) -> None:
    from sklearn.metrics import roc_auc_score

    from rag.answer.calibrator import CALIBRATORS, load
    from rag.answer.features import NAMES, Features

    calibrator = load(CALIBRATORS / f"{model_name}.json")
    print(f"calibrator: {calibrator.kind}, threshold {calibrator.threshold}, features {len(calibrator.features)}")
    series = []
    for path in paths:
        rows = read(path)
        answered = [r for r in rows if r["label"] and r["features"]]
        n = len(rows)
        y = np.array([r["label"] == "right" for r in answered], dtype=int)
        p = np.array([calibrator.p_correct(Features(**{**{k: None for k in NAMES}, **r["features"]}))
                      for r in answered])
        old_ok = np.array([r["old_verified"] for r in answered], dtype=int)
        p_min = np.array([r["features"]["p_min"] or 0.0 for r in answered])
        new_flag, old_flag = (p < calibrator.threshold) | ungrounded(answered), old_ok == 0  # as Answer.verified
        wrong, right = y == 0, y == 1
        refused = n - len(answered)
        print(f"\n{path.name}: {n} questions, {int(right.sum())} right, {int(wrong.sum())} wrong, {refused} refused "
              f"(strict verdict 'correct': {sum(r['verdict'] == 'correct' for r in rows)})")
        print("| rule | AUC | wrong flagged | right flagged | wrong with no warning (of all questions) | "
              "withheld: right shown / wrong shown / withheld |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, score, flag in (("calibrator (p_correct)", p, new_flag), ("old rule-based checks", old_ok, old_flag)):
            auc = roc_auc_score(y, score) if 0 < y.sum() < len(y) else float("nan")
            silent = int((wrong & ~flag).sum())
            print(f"| {name} | {auc:.2f} | {int((wrong & flag).sum())} of {int(wrong.sum())} "
                  f"({np.mean(flag[wrong]) if wrong.any() else 0:.0%}) | {int((right & flag).sum())} of "
                  f"{int(right.sum())} ({np.mean(flag[right]) if right.any() else 0:.0%}) | {silent} "
                  f"({silent / n:.0%}) | {int((right & ~flag).sum()) / n:.0%} / {silent / n:.0%} / "
                  f"{int(flag.sum()) / n:.0%} |")
        if 0 < y.sum() < len(y):
            print(f"(least token probability alone: AUC {roc_auc_score(y, p_min):.2f}; second reply "
                  f"{np.mean([r.get('second_seconds', 0) for r in answered]):.1f} s on average in this run)")
            reach = within_set(answered, y, calibrator)
            if reach:
                print(f"(the shipped recipe fitted on this set itself, cross-validated: AUC {reach[0]:.2f}, "
                      f"{reach[1]:.0%} of wrong answers flagged for at most {MAX_RIGHT_FLAGGED:.0%} of right ones: how "
                      "far these features reach on these answers, not a held-out figure)")
        series.append((path.stem.removeprefix("verifier-"), p, y))
    reliability(series, calibrator.threshold, model_name)


def within_set(rows: list[dict], y: np.ndarray, calibrator: Calibrator) -> tuple[float, float] | None:
    """What the shipped calibrator's recipe (its features, logistic regression with its C) reaches when fitted on
    these answers themselves: the CV AUC and the wrong answers flagged at the threshold flagging at most
    MAX_RIGHT_FLAGGED of right ones out of fold. An upper reference for a held-out set, not a held-out figure:
    if it falls short of a target, no threshold or weighting of these features meets the target there."""
    chosen = str((calibrator.meta or {}).get("chosen", ""))
    if calibrator.kind != "logistic" or int((y == 0).sum()) < WITHIN_SET_WRONG:
        return None
    c = float(re.search(r"C=([\d.]+)", chosen).group(1)) if "C=" in chosen else 0.1
    x = matrix(rows, list(calibrator.features))
    x = np.where(np.isnan(x), np.nanmedian(x, axis=0), x)
    auc, oof = out_of_fold(logistic(c), x, y)
    return auc, choose_threshold(oof, y, ungrounded(rows))[1]


def reliability(series: list[tuple[str, np.ndarray, np.ndarray]], threshold: float, model_name: str = MODEL) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5), dpi=110)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfectly calibrated")
    edges = np.linspace(0, 1, 6)
    for (name, p, y), marker in zip(series, "os^", strict=False):
        xs, ys, ns = [], [], []
        for lo, hi in zip(edges[:-1], edges[1:], strict=True):
            inside = (p >= lo) & (p < hi if hi < 1 else p <= hi)
            if inside.any():
                xs.append(float(p[inside].mean()))
                ys.append(float(y[inside].mean()))
                ns.append(int(inside.sum()))
        ax.plot(xs, ys, marker=marker, label=f"{'half B' if name == 'b' else 'second set'} (n={len(y)})")
        for xv, yv, nv in zip(xs, ys, ns, strict=True):
            ax.annotate(str(nv), (xv, yv), textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax.axvline(threshold, color="tab:red", linewidth=0.8, label=f"threshold {threshold:g}")
    ax.set_xlabel("p_correct (mean in each fifth of [0, 1])")
    ax.set_ylabel("share of answers right")
    ax.set_title(f"Answer calibrator, held-out answers\n({model_name}; numbers: answers per bin)", fontsize=9)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    plot = PLOT if model_name == MODEL else PLOT.with_name(f"verifier-reliability-{model_name}.png")
    fig.savefig(plot)
    print(f"\nwrote {plot.relative_to(ROOT)}")
