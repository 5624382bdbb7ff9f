"""Retention of the `reason` case journal (models/textcls/journal.py): planning, compaction, and
replicas that tail the journal across generations. Small random vectors in a real faiss index: no
model is loaded, the whole file runs in a second or two."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from models.textcls import journal as journal_mod
from models.textcls.case_library import CaseLibrary
from models.textcls.cases import Case, CaseIndex
from models.textcls.config import CaseRetention, ReasonConfig
from models.textcls.journal import (
    DAY_S,
    MB,
    TEMP_NAME,
    CaseJournal,
    LineInfo,
    plan_keep,
)

DIM = 8
FP = "test-encoder"
NOW = 2_000_000_000.0  # a fixed wall clock: every age below is relative to it


def vec(case_id: str) -> np.ndarray:
    """A deterministic unit vector per id, so a case is found by its own vector."""
    rng = np.random.default_rng(abs(hash(case_id)) % 2**32)
    v = rng.standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def case(case_id: str, reply: str = "") -> Case:
    return Case(id=case_id, subject=case_id, text=f"text of {case_id}", reply=reply, source="added")


SEED_IDS = ("seed-1", "seed-2", "seed-3")


def seed() -> CaseIndex:
    cases = [Case(id=i, subject=i, text=i, reply="seed reply", source="labelled") for i in SEED_IDS]
    return CaseIndex(cases, np.stack([vec(c.id) for c in cases]))


def never_embed(texts: list[str]) -> np.ndarray:
    raise AssertionError(f"every vector here is from {FP}; nothing should be embedded again: {texts}")


class Replica:
    """What a `reason` replica does with the journal: its own view and index, synced before use."""

    def __init__(self, directory, retention: CaseRetention | None = None) -> None:
        self.journal = CaseJournal(directory, retention)
        self.index, _ = self.journal.sync(seed(), FP, never_embed, seed)

    def sync(self) -> CaseIndex:
        self.index, _ = self.journal.sync(self.index, FP, never_embed, seed)
        return self.index

    def add(self, ids, now: float, reply: str = "") -> None:
        self.journal.append([case(i, reply) for i in ids], np.stack([vec(i) for i in ids]), FP, now_wall=now)


def assert_index_is(index: CaseIndex, ids) -> None:
    """Exactly these ids, each once, each row's vector its own (no duplicates, nothing shifted)."""
    got = [c.id for c in index.cases]
    assert sorted(got) == sorted(ids) and len(got) == len(set(got)) == index.index.ntotal
    hits = index.search(np.stack([vec(i) for i in got]), k=1)
    assert [h[0][0].id for h in hits] == got


def walls_of(path) -> list[tuple[str, float]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [(raw["id"], raw["added_wall"]) for raw in map(json.loads, lines) if "id" in raw]


# ---- the plan: which lines a compaction keeps ------------------------------------------------------
def info(case_id, age_days, nbytes=100, dated=True):
    return LineInfo(case_id, NOW - age_days * DAY_S, nbytes, dated)


@pytest.mark.parametrize(("lines", "retention", "kept"), [
    pytest.param([info("a", 400), info("b", 200), info("c", 1)], CaseRetention(max_age_days=365), [1, 2],
                 id="age cut"),
    pytest.param([info("a", 3), info("b", 2), info("a", 1)], CaseRetention(), [1, 2],
                 id="the last line of an id wins"),
    pytest.param([info("a", 1), info(None, 1), info("b", 1)], CaseRetention(), [0, 2],
                 id="damaged line dropped"),
    pytest.param([info(f"c{i}", 10 - i) for i in range(10)], CaseRetention(max_cases=10), list(range(10)),
                 id="at max_cases: kept"),
    pytest.param([info(f"c{i}", 11 - i) for i in range(11)], CaseRetention(max_cases=10), list(range(2, 11)),
                 id="over max_cases: oldest go down to 90%"),
    pytest.param([info("a", 2), info("b", 1)], CaseRetention(max_cases=1), [1], id="max_cases=1 keeps one"),
    pytest.param([info(f"c{i}", 5 - i, nbytes=MB // 4) for i in range(5)], CaseRetention(max_mb=1.0),
                 [2, 3, 4], id="over max_mb: oldest go down to 90%"),
    pytest.param([info("u", 0, dated=False), info("b", 1)], CaseRetention(max_age_days=2), [0, 1],
                 id="undated line kept"),
])
def test_plan_keep(lines, retention, kept):
    plan = plan_keep(lines, retention, NOW)
    assert plan.keep == kept and plan.dropped == len(lines) - len(kept)


# ---- compaction of the file ------------------------------------------------------------------------
@pytest.mark.parametrize(("retention", "adds", "kept"), [
    pytest.param(CaseRetention(max_age_days=30), [(["a", "b"], 40), (["c"], 10), (["d"], 0)], ["c", "d"],
                 id="age cut"),
    pytest.param(CaseRetention(max_cases=4), [([f"c{i}"], 10 - i) for i in range(6)], ["c3", "c4", "c5"],
                 id="size cut by count"),
    pytest.param(CaseRetention(max_age_days=30), [(["a"], 40), (["a"], 1)], ["a"],
                 id="an update restarts the clock"),
])
def test_compaction_keeps_the_window_and_seed(tmp_path, retention, adds, kept):
    writer = Replica(tmp_path, retention)
    for ids, age_days in adds:
        writer.add(ids, NOW - age_days * DAY_S)
    writer.sync()
    assert writer.journal.due(NOW)
    done = writer.journal.compact(NOW)
    assert done is not None and (done.generation, done.kept) == (1, len(kept))
    header = json.loads((tmp_path / "added_cases.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert (header["generation"], header["kept"], header["dropped"]) == (1, len(kept), done.dropped)
    assert sorted(i for i, _ in walls_of(tmp_path / "added_cases.jsonl")) == sorted(kept)
    assert_index_is(writer.sync(), [*SEED_IDS, *kept])  # the seed corpus is never pruned
    assert not writer.journal.due(NOW) and writer.journal.compact(NOW) is None  # nothing left to drop
    assert_index_is(Replica(tmp_path, retention).index, [*SEED_IDS, *kept])  # a replica starting now


def test_an_expired_update_of_a_seed_case_gives_the_seed_case_back(tmp_path):
    writer = Replica(tmp_path, CaseRetention(max_age_days=30))
    writer.add(["seed-2", "x"], NOW - 40 * DAY_S, reply="run-time reply")
    assert writer.sync().cases[writer.index.rows["seed-2"]].reply == "run-time reply"
    assert writer.journal.compact(NOW).kept == 0
    index = writer.sync()
    assert_index_is(index, SEED_IDS)
    assert index.cases[index.rows["seed-2"]].reply == "seed reply"


@pytest.mark.parametrize("seen_lines", [0, 2, 5], ids=["saw nothing", "saw part", "saw all"])
def test_a_replica_tailing_the_old_generation_rebuilds(tmp_path, seen_lines):
    """Whatever it had applied of generation 0, after the compaction it holds exactly the kept cases,
    then the cases appended to generation 1, each once."""
    retention = CaseRetention(max_age_days=30)
    writer = Replica(tmp_path, retention)
    ids = ["old-1", "old-2", "new-1", "new-2", "new-3"]
    reader = Replica(tmp_path, retention) if seen_lines == 0 else None
    for i, case_id in enumerate(ids):
        writer.add([case_id], NOW - (40 if case_id.startswith("old") else 5 - i) * DAY_S)
        if i + 1 == seen_lines:
            reader = Replica(tmp_path, retention)  # started here: it has applied lines 1..seen_lines
    writer.sync()
    assert writer.journal.compact(NOW).kept == 3
    writer.add(["after-1"], NOW)
    kept = [*SEED_IDS, "new-1", "new-2", "new-3", "after-1"]
    assert reader.journal.changed()
    assert_index_is(reader.sync(), kept)
    assert_index_is(reader.sync(), kept)  # and a second sync applies nothing twice
    writer.add(["after-2"], NOW)
    assert_index_is(reader.sync(), [*kept, "after-2"])


def test_two_generations_in_a_row_are_both_seen(tmp_path):
    retention = CaseRetention(max_cases=2)
    writer, reader = Replica(tmp_path, retention), Replica(tmp_path, retention)
    for ids in (["a", "b", "c"], ["d", "e", "f"]):
        writer.add(ids, NOW)
        writer.sync()
        assert writer.journal.compact(NOW) is not None
    assert json.loads((tmp_path / "added_cases.jsonl").read_text().splitlines()[0])["generation"] == 2
    assert_index_is(reader.sync(), [*SEED_IDS, "f"])


# ---- when a replica compacts ---------------------------------------------------------------------------
@pytest.mark.parametrize(("retention", "age_days", "count", "due"), [
    (CaseRetention(max_cases=5), 0, 5, False),
    (CaseRetention(max_cases=5), 0, 6, True),
    (CaseRetention(max_age_days=30), 30.5, 1, False),  # within the day of slack: no daily rewrite storm
    (CaseRetention(max_age_days=30), 31.5, 1, True),
    (CaseRetention(), 1825 + 18, 1, False),  # five years: the slack is 1% (18 days), a rewrite every 18 days
    (CaseRetention(), 1825 + 19, 1, True),
    (CaseRetention(max_mb=0.001), 0, 1, False),  # a line here is ~150 bytes (8-d vectors)
    (CaseRetention(max_mb=0.001), 0, 10, True),
])
def test_due(tmp_path, retention, age_days, count, due):
    replica = Replica(tmp_path, retention)
    replica.add([f"c{i}" for i in range(count)], NOW - age_days * DAY_S)
    replica.sync()
    assert replica.journal.due(NOW) is due


def test_a_compaction_with_nothing_to_drop_is_not_retried_at_once(tmp_path):
    """Two replicas find the journal past a limit; the second to take the lock finds nothing to drop,
    and does not reread the journal on every batch while its view is stale."""
    retention = CaseRetention(max_cases=2)
    first, second = Replica(tmp_path, retention), Replica(tmp_path, retention)
    first.add(["a", "b", "c"], NOW)
    first.sync(), second.sync()
    assert first.journal.due(NOW) and second.journal.due(NOW)
    assert first.journal.compact(NOW).kept == 1
    assert second.journal.compact(NOW) is None
    assert not second.journal.due(NOW + 1) and second.journal.due(NOW + journal_mod.RETRY_GAP_S + 1)
    assert_index_is(second.sync(), [*SEED_IDS, "c"])
    assert not second.journal.due(NOW + journal_mod.RETRY_GAP_S + 1)


# ---- crashes and concurrency -----------------------------------------------------------------------
def test_a_crash_mid_compaction_leaves_a_valid_journal(tmp_path, monkeypatch):
    retention = CaseRetention(max_age_days=30)
    writer = Replica(tmp_path, retention)
    writer.add(["old"], NOW - 40 * DAY_S)
    writer.add(["new"], NOW)
    before = (tmp_path / "added_cases.jsonl").read_bytes()

    def crash(src, dst):
        raise OSError("power cut before the rename")

    writer.sync()
    monkeypatch.setattr(journal_mod.os, "replace", crash)
    with pytest.raises(OSError, match="power cut"):
        writer.journal.compact(NOW)
    monkeypatch.undo()
    assert (tmp_path / TEMP_NAME).is_file() and (tmp_path / "added_cases.jsonl").read_bytes() == before
    assert_index_is(Replica(tmp_path, retention).index, [*SEED_IDS, "old", "new"])  # the old journal, whole

    (tmp_path / TEMP_NAME).write_bytes(b'{"half a li')  # a temp file torn mid-write is just as harmless
    with open(tmp_path / "added_cases.jsonl", "ab") as fh:
        fh.write(b'{"id": "torn", "subj')  # and so is an append torn by the same crash (never acknowledged)
    assert_index_is(Replica(tmp_path, retention).index, [*SEED_IDS, "old", "new"])
    assert writer.journal.compact(NOW).kept == 1
    assert not (tmp_path / TEMP_NAME).exists()
    assert_index_is(Replica(tmp_path, retention).index, [*SEED_IDS, "new"])


def test_appends_racing_compactions_lose_nothing(tmp_path):
    """Appends and compactions from separate journals (separate lock descriptors, as separate replicas
    have): every id appended is in the final journal once, with its last version."""
    retention = CaseRetention()
    appender, compactor = Replica(tmp_path, retention), Replica(tmp_path, retention)
    stop = threading.Event()
    compactions = []

    def compact_forever():
        while not stop.is_set():
            done = compactor.journal.compact(NOW)  # every pass finds older duplicates to drop
            compactions.extend([done] if done else [])

    thread = threading.Thread(target=compact_forever)
    thread.start()
    try:
        for round_ in range(3):
            for i in range(40):
                appender.add([f"c{i}"], NOW, reply=f"v{round_}")
    finally:
        stop.set()
        thread.join()
    assert compactions, "no compaction ran while appending"
    final = Replica(tmp_path, retention).index
    assert_index_is(final, [*SEED_IDS, *(f"c{i}" for i in range(40))])
    assert {final.cases[final.rows[f"c{i}"]].reply for i in range(40)} == {"v2"}
    assert_index_is(appender.sync(), [*SEED_IDS, *(f"c{i}" for i in range(40))])


def test_legacy_lines_without_a_date_are_dated_by_the_compaction(tmp_path):
    """A journal written before lines were dated: its lines age from the journal's last write."""
    writer = Replica(tmp_path, CaseRetention(max_cases=1))
    writer.add(["a", "b"], NOW)
    path = tmp_path / "added_cases.jsonl"
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    path.write_text("".join(json.dumps({k: v for k, v in raw.items() if k != "added_wall"}) + "\n"
                            for raw in lines), encoding="utf-8")
    mtime = path.stat().st_mtime
    assert writer.journal.compact(mtime + 10 * DAY_S).kept == 1  # the count cut: not dropped by age
    assert walls_of(path) == [("b", round(mtime, 3))]


def test_reason_config_takes_case_retention():
    cfg = ReasonConfig.from_dict({"case_retention": {"max_age_days": 3650, "max_cases": 50_000}})
    assert (cfg.case_retention.max_age_days, cfg.case_retention.max_cases) == (3650, 50_000)
    assert ReasonConfig.load().case_retention == CaseRetention()  # configs/reason.yaml states the defaults
    from hub.errors import InvalidInput

    with pytest.raises(InvalidInput, match="max_cases"):
        ReasonConfig.from_dict({"case_retention": {"max_cases": 0}})


# ---- a replica's library: background rebuild, synchronous additions ----------------------------------
def library(directory, retention: CaseRetention):
    return CaseLibrary(seed(), seed, directory, retention, FP, never_embed)


def test_a_library_rebuilds_a_compacted_journal_in_the_background(tmp_path):
    retention = CaseRetention(max_cases=3)
    writer, reader = library(tmp_path, retention), library(tmp_path, retention)
    for ids in (["a", "b"], ["c"]):
        writer.add([case(i) for i in ids], np.stack([vec(i) for i in ids]))
    reader.refresh()
    assert_index_is(reader.index, [*SEED_IDS, "a", "b", "c"])
    assert writer.add([case("d")], vec("d")[None]) == (1, 0)  # past max_cases: compacts, rebuilds inline
    assert_index_is(writer.index, [*SEED_IDS, "c", "d"]) and writer.journal.generation == 1
    reader.refresh()  # starts the rebuild; the old index answers meanwhile
    assert reader.wait(timeout_s=30)
    assert_index_is(reader.index, [*SEED_IDS, "c", "d"]) and reader.journal.generation == 1
    writer.add([case("e")], vec("e")[None])
    reader.refresh()  # back to tailing: appended lines apply inline
    assert_index_is(reader.index, [*SEED_IDS, "c", "d", "e"])


def test_an_addition_during_a_rebuild_is_neither_lost_nor_applied_twice(tmp_path):
    retention = CaseRetention(max_cases=2)
    writer, reader = library(tmp_path, retention), library(tmp_path, retention)
    writer.add([case(i) for i in "abc"], np.stack([vec(i) for i in "abc"]))  # compacts: keeps c
    reader.refresh()  # rebuild in the background ...
    assert reader.add([case("z")], vec("z")[None]) == (1, 0)  # ... while this replica adds inline
    assert reader.wait(timeout_s=30)
    reader.refresh()
    assert_index_is(reader.index, [*SEED_IDS, "c", "z"])
