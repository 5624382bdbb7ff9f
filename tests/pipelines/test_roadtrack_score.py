"""The RoadTrack scoring protocol as bench/roadtrack.py implements it (the tarball's README.txt, and
the benchmark's own run_roadtrack.py): table-driven, on hand-made ground truth and alarms."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("roadtrack_bench", Path(__file__).parents[2] / "bench" / "roadtrack.py")
rt = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = rt  # its dataclasses look their module up there
_spec.loader.exec_module(rt)

BOX = (100.0, 100.0, 20.0, 20.0)
SHIFT_HALF = (110.0, 100.0, 20.0, 20.0)  # IoU 1/3 with BOX
SHIFT_THIRD = (100.0, 100.0, 20.0, 30.0)  # IoU 2/3 with BOX


def gt_track(tid: int, first: int, n: int, box=BOX):
    return [(f, tid, box, 1.0, 2) for f in range(first, first + n)]


def alarm(frames, box=BOX):
    return [(f, box) for f in frames]


# (case, ground-truth rows, {episode: [(frame, xywh)]}, (found, missed, false alarms), latencies in frames)
CASES = [
    ("alarms on 20 % of the rows find the stop; latency counts rows to the first hit",
     gt_track(0, 41, 10), {"a": alarm(range(48, 51))}, (1, 0, 0), [7]),
    ("alarms on 10 % of the rows miss it (the alarm itself is on the vehicle: not false)",
     gt_track(0, 41, 10), {"a": alarm([49])}, (0, 1, 0), []),
    ("no alarm: missed", gt_track(0, 41, 10), {}, (0, 1, 0), []),
    ("an alarm with 90 % of its boxes on ground truth is not false",
     gt_track(0, 41, 9), {"a": alarm(range(41, 51))}, (1, 0, 0), [0]),
    ("one with 80 % is false, even on the right vehicle (it fired before the annotation starts)",
     gt_track(0, 43, 8), {"a": alarm(range(41, 51))}, (1, 0, 1), [0]),
    ("every alarm on a sequence without ground truth (N) is false",
     [], {"a": alarm(range(1, 40)), "b": alarm([7])}, (0, 0, 2), []),
    ("two episodes on the same stop: one found stop, neither false (duplicates cost nothing)",
     gt_track(0, 41, 10), {"a": alarm(range(41, 46)), "b": alarm(range(46, 51))}, (1, 0, 0), [0]),
    ("IoU 1/3 is no overlap: missed, and the alarm is false",
     gt_track(0, 41, 10), {"a": alarm(range(41, 51), SHIFT_HALF)}, (0, 1, 1), []),
    ("IoU 2/3 overlaps", gt_track(0, 41, 10), {"a": alarm(range(41, 51), SHIFT_THIRD)}, (1, 0, 0), [0]),
    ("ground truth is truncated to whole pixels before the IoU",
     gt_track(0, 41, 10, (100.9, 100.9, 20.9, 20.9)), {"a": alarm(range(41, 51))}, (1, 0, 0), [0]),
    ("two stopped vehicles, one alarmed: one found, one missed",
     gt_track(0, 41, 10) + gt_track(1, 41, 10, (300.0, 100.0, 20.0, 20.0)), {"a": alarm(range(41, 51))},
     (1, 1, 0), [0]),
]


@pytest.mark.parametrize("case,gt,alarms,counts,latencies", CASES, ids=[c[0] for c in CASES])
def test_scoring_protocol(case, gt, alarms, counts, latencies):
    s = rt.score_sequence(gt, alarms)
    assert (s.found, s.missed, s.false_alarms) == counts
    assert s.latency_frames == latencies


def test_precision_recall_f1_latency_over_sequences():
    total = rt.Score()
    total.add(rt.score_sequence(gt_track(0, 41, 10), {"a": alarm(range(45, 51))}))  # found, 4 frames late
    total.add(rt.score_sequence(gt_track(0, 41, 10), {}))  # missed
    total.add(rt.score_sequence([], {"n": alarm([3])}))  # one false alarm on an N sequence
    p, r, f1, latency_s = total.row()
    assert (p, r, f1) == (0.5, 0.5, 0.5)
    assert latency_s == pytest.approx(0.4)  # 4 frames at 10 fps
