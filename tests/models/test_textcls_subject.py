"""The subject-aware head of `reason` (issue 16): requests that give a subject line are answered by
it, the others (hotline transcripts) by the text head; artifacts made before it existed still load."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from models.textcls import ReasonRequest
from models.textcls.heads import LinearHead, load_head
from tests.models.test_textcls_support import default_artifact, load_classifier

VAGUE = "这个问题已经反映很多次了，一直没有人管，请相关部门尽快处理，谢谢。"  # no topic in the text


@pytest.fixture(scope="session")
def artifact(shared_dir):
    return default_artifact(shared_dir)


@pytest.fixture(scope="module")
def clf(artifact, tmp_path_factory):
    return load_classifier(artifact, tmp_path_factory.mktemp("reason-subject"))


@pytest.fixture(scope="module")
def old_artifact(artifact, tmp_path_factory):
    """The same artifact as written before the subject head existed: no `subject_classifier`, no dir."""
    old = tmp_path_factory.mktemp("reason-old") / "artifact"
    shutil.copytree(artifact, old)
    hub = json.loads((old / "hub.json").read_text(encoding="utf-8"))
    del hub["subject_classifier"]
    (old / "hub.json").write_text(json.dumps(hub, ensure_ascii=False), encoding="utf-8")
    shutil.rmtree(old / "classifier-subject")
    return old


def test_default_artifact_has_both_heads(artifact):
    hub = json.loads((artifact / "hub.json").read_text(encoding="utf-8"))
    assert hub["classifier"]["kind"] == "hybrid-linear" and "subject" not in hub["classifier"]
    assert hub["subject_classifier"]["kind"] == "subject-hybrid-linear"
    assert hub["metadata"]["heads"] == "text,subject"
    assert hub["metadata"]["subject_cv_accuracy"] > hub["metadata"]["cv_accuracy"]  # why it is shipped


@pytest.mark.parametrize(
    ("subject", "inputs", "category"),
    [
        ("", ["text"], None),  # a hotline transcript: the text head
        ("   \n", ["text"], None),  # blank after cleaning: the text head
        ("医院乱收费，医保报销难", ["subject", "text"], "卫生计生"),
        ("出租车拒载", ["subject", "text"], "交通运输"),
        ("学校招生不公平", ["subject", "text"], "教育文体"),
        ("工厂排放废气污染环境", ["subject", "text"], "环境保护"),
    ],
)
def test_requests_are_routed_by_their_subject(clf, subject, inputs, category):
    text_only = clf.predict_batch([ReasonRequest(text=VAGUE)])[0]
    r = clf.predict_batch([ReasonRequest(text=VAGUE, subject=subject)])[0]
    assert r.inputs == inputs
    if category is None:  # answered exactly as without a subject
        assert (r.category, r.confidence) == (text_only.category, text_only.confidence)
    else:  # the subject carries the topic the text lacks (the text alone says 城乡建设, unsure)
        assert r.category == category != text_only.category and r.confidence > text_only.confidence


def test_mixed_batch_matches_single_requests(clf):
    requests = [ReasonRequest(text=VAGUE, subject="小区路灯坏了无人维修"), ReasonRequest(text="医院收费太贵了"),
                ReasonRequest(text="公交车司机态度恶劣", subject="公交车司机态度恶劣")]
    together = clf.predict_batch(requests)
    alone = [clf.predict_batch([r])[0] for r in requests]
    assert [(r.category, r.confidence, r.inputs) for r in together] == [(r.category, r.confidence, r.inputs)
                                                                         for r in alone]


@pytest.mark.parametrize("subject", ["", "小区路灯坏了无人维修"])
def test_an_artifact_without_a_subject_head_answers_from_text(clf, old_artifact, tmp_path, subject):
    old = load_classifier(old_artifact, tmp_path)
    assert old.subject_head is None
    r = old.predict_batch([ReasonRequest(text=VAGUE, subject=subject)])[0]
    text_only = clf.predict_batch([ReasonRequest(text=VAGUE)])[0]
    assert r.inputs == ["text"] and (r.category, r.confidence) == (text_only.category, text_only.confidence)


@pytest.mark.parametrize(("subject", "ok"), [("", True), ("路灯坏了", True), ("路" * 500, True), ("路" * 501, False)])
def test_subject_length_is_checked_at_the_wire(subject, ok):
    from pydantic import ValidationError

    if ok:
        ReasonRequest.model_validate({"text": "路灯坏了", "subject": subject})
    else:
        with pytest.raises(ValidationError):
            ReasonRequest.model_validate({"text": "路灯坏了", "subject": subject})


def test_subject_head_survives_save_and_load(clf, tmp_path):
    head = clf.subject_head
    assert isinstance(head, LinearHead) and head.uses_subject
    again = load_head(tmp_path, {**head.save(tmp_path)})
    texts, subjects = [VAGUE, "路灯坏了"], ["路灯不亮", "医院收费"]
    vectors, subject_vectors = clf.encoder.encode(texts), clf.encoder.encode(subjects)
    np.testing.assert_allclose(again.logits(texts, vectors, subjects, subject_vectors),
                               head.logits(texts, vectors, subjects, subject_vectors), atol=1e-4)
    with pytest.raises(ValueError, match="needs the subjects"):
        head.logits(texts, vectors)
