"""The `reason` training pipeline: data, metrics, candidates, the char-BERT path, MLflow runs and the gate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hub.errors import InvalidInput
from tests.models.test_textcls_support import (
    LABELLED,
    REPLIES,
    default_artifact,
    register_champion,
    seed_embedding_cache,
)
from training.candidates import BertParams, make_candidate
from training.data import check_trainable, load_labelled, load_reply_cases, stratified_split
from training.gate import Score, decide, text_regression
from training.metrics import expected_calibration_error, fit_temperature, retrieval_agreement, wilson_interval
from training.textcls import TrainConfig, run_pipeline, train

TINY_BERT = BertParams(hidden_size=32, layers=1, heads=2, intermediate_size=64, max_len=48, epochs=3,
                       learning_rate=2e-3, init_vectors=False)


@pytest.fixture(scope="session")
def artifact(shared_dir):
    return default_artifact(shared_dir)


@pytest.fixture(scope="module")
def data(shared_dir):
    return load_labelled(shared_dir.joinpath(*LABELLED))


# ---- data ---------------------------------------------------------------------------------------

def test_labelled_data_loads_with_unique_ids(data):
    assert len(data) == 395 and len(data.classes) == 7
    assert len(set(data.ids)) == 395 and "37042#2" in data.ids  # the file has id 37042 twice
    train_rows, test_rows = stratified_split(data.labels, 0.2, seed=0)
    assert len(test_rows) == 79 and not set(train_rows) & set(test_rows)
    assert np.array_equal(test_rows, stratified_split(data.labels, 0.2, seed=0)[1])  # deterministic


def test_thucnews_titles_load_with_class_names(shared_dir):
    rows = load_labelled(shared_dir / "data" / "text" / "thucnews_titles_a.txt", max_rows=300)
    assert len(rows) == 300 and set(rows.classes) <= set(
        (shared_dir / "data" / "text" / "thucnews_classes.txt").read_text().split())


@pytest.mark.parametrize(
    ("csv", "kwargs", "message"),
    [
        ("text,category\n路灯坏了,城乡建设\n", {"label_col": "label"}, "no column 'label'"),
        ("text,category\n,城乡建设\n", {}, "no labelled rows"),
    ],
)
def test_bad_data_files_are_refused(tmp_path, csv, kwargs, message):
    path = tmp_path / "data.csv"
    path.write_text(csv, encoding="utf-8")
    with pytest.raises(InvalidInput) as info:
        load_labelled(path, **kwargs)
    assert message in str(info.value)


def test_too_few_examples_per_class_are_refused(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("text,category\n" + "".join(f"路灯{i},a\n" for i in range(20)) + "公交,b\n公交车,b\n",
                    encoding="utf-8")
    with pytest.raises(InvalidInput, match="fewer than"):
        check_trainable(load_labelled(path), folds=5, heldout_fraction=0.2)


# ---- metrics ------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("probs", "truth", "ece"),
    [
        ([[0.9, 0.1], [0.9, 0.1]], [0, 0], 0.1),  # right, but only 90% sure
        ([[0.6, 0.4], [0.6, 0.4]], [0, 1], 0.1),  # 60% sure, right half the time
        ([[1.0, 0.0], [0.0, 1.0]], [0, 1], 0.0),
    ],
)
def test_expected_calibration_error(probs, truth, ece):
    assert expected_calibration_error(np.array(probs), np.array(truth)) == pytest.approx(ece)


@pytest.mark.parametrize("true_temperature", [0.5, 2.0])
def test_fit_temperature_recovers_the_temperature(true_temperature):
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, size=(4000, 5))
    z = logits / true_temperature
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    y = np.array([rng.choice(5, p=row) for row in p])
    assert fit_temperature(logits, y) == pytest.approx(true_temperature, rel=0.1)


def test_retrieval_agreement_counts_neighbours():
    corpus = np.eye(4, dtype=np.float32)
    queries = np.array([[1, 0.1, 0, 0], [0, 0, 1, 0.2]], dtype=np.float32)
    r = retrieval_agreement(queries, np.array([0, 1]), corpus, np.array([0, 0, 1, 1]), k=2)
    assert r["top1_same_category"] == 1.0 and r["top2_same_category"] == 1.0 and r["chance"] == 0.5


# ---- candidates ---------------------------------------------------------------------------------

def test_tfidf_head_matches_sklearn_vectorizer(data):
    from sklearn.feature_extraction.text import TfidfVectorizer

    from models.textcls.heads import TfidfFeatures

    texts = list(data.texts[:200])
    vec = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), min_df=2, sublinear_tf=True).fit(texts)
    ours = TfidfFeatures.from_vectorizer(vec).transform(texts[:50] + ["全新的文字ABC"])
    assert np.allclose(ours.toarray(), vec.transform(texts[:50] + ["全新的文字ABC"]).toarray())


@pytest.mark.parametrize("name", ["tfidf", "hybrid", "e5-linear"])
def test_linear_candidates_are_deterministic_and_handle_two_classes(name):
    rng = np.random.default_rng(1)
    texts = ["路灯坏了请维修", "公交车太挤了", "路灯不亮", "公交车晚点", "小区路灯", "公交线路"] * 3
    y = np.array([0, 1] * 9)
    vectors = rng.normal(size=(len(texts), 384)).astype(np.float32)
    vectors[y == 1, 0] += 3  # separable through the e5 part as well
    a = make_candidate(name).fit(texts, y, vectors, n_classes=2)
    b = make_candidate(name).fit(texts, y, vectors, n_classes=2)
    assert a.coef.shape[0] == 2 and np.array_equal(a.coef, b.coef)
    assert (a.logits(texts, vectors).argmax(1) == y).mean() == 1.0


def test_char_bert_artifact_trains_loads_and_serves(data, shared_dir, tmp_path):
    """The transformers candidate end to end (tiny config): CV, artifact, load, predict."""
    from hub.settings import get_settings
    from models.textcls import HotlineClassifier, ReasonRequest

    config = TrainConfig(candidates=("char-bert",), bert=TINY_BERT, progress=False)
    result = train(data, tmp_path / "artifact", config, cache_dir=get_settings().cache_dir / "e5",
                   vectors_dir=shared_dir / "models" / "text", echo=lambda *_: None)
    assert result.best_name == "char-bert" and 0.0 <= result.best.cv.accuracy <= 1.0
    hub = json.loads((tmp_path / "artifact" / "hub.json").read_text(encoding="utf-8"))
    assert hub["classifier"]["kind"] == "char-bert" and (tmp_path / "artifact/classifier/model.safetensors").is_file()
    clf = HotlineClassifier(data_dir=tmp_path / "data")
    clf.load(tmp_path / "artifact", "cpu")
    r = clf.predict_batch([ReasonRequest(text="小区门口的路灯坏了两个星期")])[0]
    assert r.category in data.classes and len(r.similar_cases) == 3


def test_tencent_vectors_initialise_the_char_bert(data, shared_dir):
    params = BertParams(hidden_size=200, layers=1, heads=2, intermediate_size=64, max_len=32, epochs=1)
    candidate = make_candidate("char-bert", vectors_dir=shared_dir / "models" / "text", bert=params)
    itos, init = candidate._vocabulary(data.texts)
    assert len(itos) == 4763 and init.shape == (4760, 200)  # 4,762 Tencent chars - <UNK>/<PAD> + 3 specials


# ---- the default model and its report -----------------------------------------------------------

def test_default_model_card_reports_the_run(artifact):
    card = (artifact / "model_card.md").read_text(encoding="utf-8")
    metrics = json.loads((artifact / "metrics.json").read_text(encoding="utf-8"))
    best = metrics[metrics["selected"]]
    assert f"{best['cv_macro_f1']:.3f}" in card and f"{best['cv_accuracy']:.3f}" in card
    assert "beats the TF-IDF baseline" in card and "ECE" in card
    assert best["cv_accuracy"] > metrics["tfidf"]["cv_accuracy"]
    assert metrics["retrieval"]["top3_same_category"] > 2 * metrics["retrieval"]["chance"]
    low, high = metrics["heldout_accuracy_ci95"]
    assert metrics["heldout_n"] == 79 and low < best["heldout_accuracy"] < high
    assert f"95% Wilson interval {low:.3f}-{high:.3f}" in card
    subject = metrics["subject-hybrid"]  # the subject-aware head: same folds, same held-out rows
    low, high = metrics["subject_heldout_accuracy_ci95"]
    assert "## Subject-aware head" in card and f"{subject['cv_accuracy']:.3f}" in card
    assert low < subject["heldout_accuracy"] < high and f"{low:.3f}-{high:.3f} (n=79)" in card


@pytest.mark.parametrize(
    ("csv", "subject_col", "has_subjects"),
    [
        ("id,subject,text,category\n1,路灯,路灯坏了,城建\n", "subject", True),
        ("id,subject,text,category\n1,路灯,路灯坏了,城建\n", "", False),  # disabled
        ("id,subject,text,category\n1, ,路灯坏了,城建\n", "subject", False),  # blank column
        ("id,text,category\n1,路灯坏了,城建\n", "subject", False),  # no column: first 40 chars as titles
    ],
)
def test_labelled_data_knows_whether_it_has_subjects(tmp_path, csv, subject_col, has_subjects):
    path = tmp_path / "d.csv"
    path.write_text(csv, encoding="utf-8")
    data = load_labelled(path, subject_col=subject_col)
    assert data.has_subjects is has_subjects and data.subjects[0] == ("路灯" if has_subjects else "路灯坏了")


@pytest.mark.parametrize(
    ("challenger", "champion", "refused"),
    [(0.80, None, False), (0.80, 0.80, False), (0.81, 0.80, False), (0.79, 0.80, True)],
)
def test_gate_refuses_a_worse_text_head(challenger, champion, refused):
    reason = text_regression(Score(0.0, challenger, 79), None if champion is None else Score(0.0, champion, 79))
    assert (reason is not None) is refused


@pytest.mark.parametrize(
    ("accuracy", "n", "low", "high"),
    [(0.861, 79, 0.767, 0.921), (1.0, 10, 0.722, 1.0), (0.0, 10, 0.0, 0.278), (0.5, 0, 0.0, 1.0)],
)
def test_wilson_interval(accuracy, n, low, high):
    assert wilson_interval(accuracy, n) == pytest.approx((low, high), abs=0.001)


# ---- gate ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("challenger", "champion", "min_delta", "promote"),
    [
        (0.80, None, 0.0, True),  # first version
        (0.82, 0.80, 0.0, True),
        (0.80, 0.80, 0.0, False),  # a tie keeps the champion
        (0.79, 0.80, 0.0, False),
        (0.805, 0.80, 0.01, False),
    ],
)
def test_gate_decision(challenger, champion, min_delta, promote):
    decision = decide(Score(0.0, challenger, 79), None if champion is None else Score(0.0, champion, 79), "1",
                      min_delta=min_delta)
    assert decision.promote is promote and decision.challenger == challenger and decision.champion == champion


def test_pipeline_logs_registers_and_gates(hub_home, shared_dir, artifact):
    """Issue check 1: runs logged to MLflow, a version registered, the gate decision visible."""
    import mlflow

    from hub.settings import get_settings
    from registry.store import MlflowStore

    seed_embedding_cache(hub_home)
    assert register_champion(artifact) == "1"  # the bootstrap default: hybrid, held-out macro-F1 0.84
    lines: list[str] = []
    outcome = run_pipeline(shared_dir.joinpath(*LABELLED), config=TrainConfig(candidates=("tfidf",), progress=False),
                           cases_path=shared_dir.joinpath(*REPLIES), echo=lines.append,
                           model_card_path=hub_home / "card.md")
    store = MlflowStore.from_settings()
    assert outcome.version == "2" and not outcome.promoted
    assert store.alias_version("hotline-classifier", "champion") == "1"
    assert store.alias_version("hotline-classifier", "challenger") == "2"
    gate = [line for line in lines if line.startswith("gate")]
    assert any("challenger v2" in g for g in gate) and any("champion   v1" in g for g in gate)
    assert "KEEP CHAMPION" in gate[-1]
    assert (hub_home / "card.md").read_text(encoding="utf-8").startswith("# Model card")

    client = mlflow.MlflowClient(get_settings().tracking_uri)
    parent = client.get_run(outcome.run_id)
    assert parent.data.params["selected"] == "tfidf" and parent.data.tags["hub.gate.promoted"] == "False"
    m = parent.data.metrics
    # as served (subject head where the held-out row has a subject) both versions answer with equally
    # trained subject heads: a tie; the text-only head (hotline calls) of the tfidf challenger is worse
    assert m["gate_challenger_macro_f1"] == m["gate_champion_macro_f1"] and m["gate_subject_rows"] == 79
    assert m["gate_champion_text_macro_f1"] > m["gate_challenger_text_macro_f1"]
    assert {"subject_cv_accuracy", "subject_heldout_accuracy", "subject_heldout_accuracy_ci95_low",
            "heldout_accuracy_ci95_high"} <= set(m)
    children = client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{outcome.run_id}'")
    names = {c.data.tags["mlflow.runName"]: c for c in children}
    assert set(names) == {"candidate-tfidf", "candidate-subject-hybrid"}
    child = names["candidate-tfidf"]
    assert {"cv_accuracy", "cv_macro_f1", "heldout_accuracy", "ece_calibrated", "cv_f1_城乡建设"} <= set(child.data.metrics)
    assert {a.path for a in client.list_artifacts(child.info.run_id, "confusion")} == {
        "confusion/tfidf-cv-confusion.png", "confusion/tfidf-heldout-confusion.png"}

    from mlflow.models import Model

    resolved = store.resolve("models:/hotline-classifier/2")
    assert Model.load(str(resolved.artifact_dir / "MLmodel")).signature.inputs.input_names() == ["text"]


def test_first_pipeline_run_becomes_champion(hub_home, shared_dir, artifact):
    from registry.store import MlflowStore

    seed_embedding_cache(hub_home)
    lines: list[str] = []
    outcome = run_pipeline(shared_dir.joinpath(*LABELLED), config=TrainConfig(candidates=("tfidf",), progress=False),
                           echo=lines.append)
    assert outcome.promoted and MlflowStore.from_settings().alias_version("hotline-classifier", "champion") == "1"
    assert "PROMOTE" in lines[-1] and "no champion yet" in lines[-1]


def test_reply_cases_load(shared_dir):
    cases = load_reply_cases(shared_dir.joinpath(*REPLIES))
    assert len(cases) == 120 and all(c.reply and c.source == "replies" for c in cases)


def test_default_training_is_deterministic(shared_dir, artifact, tmp_path):
    from training.textcls import train_default

    meta = train_default(Path(shared_dir), tmp_path)
    first = json.loads((artifact / "hub.json").read_text(encoding="utf-8"))["metadata"]
    assert meta == first
    for head in ("classifier", "classifier-subject"):
        assert np.array_equal(np.load(tmp_path / head / "coef.npy"), np.load(artifact / head / "coef.npy"))


def test_gate_refuses_a_champion_with_other_categories(hub_home, shared_dir, artifact, data):
    """Training on another taxonomy must not silently replace the hotline champion."""
    import pandas as pd

    seed_embedding_cache(hub_home)
    register_champion(artifact)
    renamed = hub_home / "renamed.csv"
    pd.DataFrame({"id": data.ids, "text": data.texts, "category": [f"x-{c}" for c in data.labels]}).to_csv(renamed)
    lines: list[str] = []
    outcome = run_pipeline(renamed, config=TrainConfig(candidates=("hybrid",), progress=False), echo=lines.append)
    assert not outcome.promoted and "categories differ" in outcome.decision.reason
    assert outcome.decision.champion == 0.0  # the champion knows none of the new labels
