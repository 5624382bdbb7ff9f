"""Camera calibration: config -> grid overlay -> speeds of a synthetic track with known m/s, and
the validation of bad calibrations."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from pipelines.calibration import Calibration, draw_grid
from pipelines.rules.motion import MotionParams, RoadMotion
from pipelines.stream_config import CameraSpec
from tests.pipelines import synth_road as sr


def spec_with(calibration: dict) -> CameraSpec:
    return CameraSpec.model_validate({
        "camera_id": "cam-road", "url": "rtsp://10.0.0.1/s", "calibration": calibration,
        "zones": [{"zone_id": "road", "points": [[0, 0.4], [1, 0.4], [1, 1], [0, 1]], "normalized": True}],
        "rules": [{"kind": "illegal_parking", "zone_id": "road", "preset": "highway-stop"}],
    })


POINTS = {"image_points": [list(p) for p in sr.IMAGE_POINTS], "road_points": [list(p) for p in sr.ROAD_POINTS_M]}


@pytest.mark.parametrize("speed_kmh", [0.0, 5.0, 30.0, 90.0, 120.0])
def test_round_trip_config_grid_and_speed_of_a_known_track(speed_kmh):
    cal = spec_with(POINTS).plan().rules[0].calibration
    assert isinstance(cal, Calibration)

    # The grid drawn from the config passes through road points on the 5 m lattice, not between them.
    overlay = draw_grid(np.zeros((sr.H, sr.W, 3), np.uint8), cal, spacing_m=5.0)
    drawn = overlay.max(axis=2) > 0
    for x_m, y_m, on_line in [(0.0, 20.0, True), (5.0, 30.0, True), (-5.0, 15.0, True),
                              (2.5, 22.5, False), (-2.5, 17.5, False)]:
        u, v = (int(round(c)) for c in sr.project(x_m, y_m))
        assert drawn[v - 1:v + 2, u - 1:u + 2].any() == on_line, (x_m, y_m)

    # A car driving away along its lane at a known speed: the filtered road-plane speed matches.
    speed_m_s = speed_kmh / 3.6
    motion = RoadMotion(MotionParams(), cal)
    estimates = [motion.update([7], box[None], ["car"], t).speed_m_s[0] for t, box in sr.speed_track(speed_m_s, 6.0)]
    settled = np.array(estimates[30:])  # after 3 s
    assert np.abs(settled - speed_m_s).max() <= 0.03 * speed_m_s + 0.3  # within 3 % (+0.3 m/s at a standstill)


def test_speed_without_calibration_is_normalised_by_box_size_not_pixels():
    """The same lateral 36 km/h near and far: pixel speeds differ ~6x, normalised speeds agree."""
    motion = RoadMotion(MotionParams(), None)
    speeds = {}
    for tid, y_m in [(1, 15.0), (2, 90.0)]:
        path = sr.cross(y_m, -6.0, 10.0)
        for k in range(40):
            box = np.array(sr.box_of(*path(k / sr.FPS)))[None]
            speeds[tid] = motion.update([tid], box, ["car"], k / sr.FPS).speed_m_s[0]
    assert speeds[1] == pytest.approx(10.0, rel=0.15) and speeds[2] == pytest.approx(10.0, rel=0.15)


def test_matrix_form_and_its_sign_do_not_matter():
    h = np.linalg.inv(np.array([[1.0, 0.2, 5.0], [0.0, 0.5, 8.0], [0.0, 0.004, 1.0]]))
    a = spec_with({"homography": h.tolist(), "metres_per_unit": 0.1}).plan().rules[0].calibration
    b = Calibration(-h, 0.1)  # a homography is defined up to scale, sign included
    pts = np.array([[320.0, 400.0], [100.0, 300.0]])
    assert np.allclose(a.to_road(pts), b.to_road(pts)) and np.isfinite(a.to_road(pts)).all()
    assert np.allclose(a.to_image(a.to_road(pts)), pts)


BAD = [
    ("three point pairs", {"image_points": [[0, 0], [1, 0], [0, 1]], "road_points": [[0, 0], [1, 0], [0, 1]]}),
    ("collinear image points", {"image_points": [[0, 0], [1, 1], [2, 2], [3, 3]],
                                "road_points": [[0, 0], [1, 0], [1, 1], [0, 1]]}),
    ("points that fit no plane", {"image_points": [[0, 0], [100, 0], [100, 100], [0, 100], [50, 50]],
                                  "road_points": [[0, 0], [10, 0], [10, 10], [0, 10], [9, 1]]}),
    ("both forms", {**POINTS, "homography": np.eye(3).tolist()}),
    ("neither form", {"metres_per_unit": 0.1}),
    ("image points without road points", {"image_points": POINTS["image_points"]}),
    ("singular matrix", {"homography": [[1, 2, 3], [2, 4, 6], [0, 0, 1]]}),
    ("not 3x3", {"homography": [[1, 0], [0, 1], [0, 0]]}),
    ("non-finite", {"homography": [[1, 0, 0], [0, 1, 0], [0, 0, float("nan")]]}),
    ("negative scale", {"homography": np.eye(3).tolist(), "metres_per_unit": -1}),
]


@pytest.mark.parametrize("case,calibration", BAD, ids=[c[0] for c in BAD])
def test_bad_calibrations_are_refused_naming_the_field(case, calibration):
    with pytest.raises(ValidationError) as info:
        spec_with(calibration)
    assert any(err["loc"][0] == "calibration" for err in info.value.errors())


@pytest.mark.parametrize("with_calibration,exit_code", [(True, 0), (False, 2)])
def test_cli_draws_the_grid_on_a_snapshot(tmp_path, with_calibration, exit_code):
    import cv2
    import yaml
    from typer.testing import CliRunner

    from cli.commands.streams import streams

    camera = {"camera_id": "cam-road", "url": "rtsp://10.0.0.1/s"}
    if with_calibration:
        camera["calibration"] = POINTS
    (tmp_path / "cam.yaml").write_text(yaml.safe_dump({"cameras": [camera]}))
    cv2.imwrite(str(tmp_path / "snap.png"), np.full((sr.H, sr.W, 3), 40, np.uint8))
    result = CliRunner().invoke(streams, ["calibrate", str(tmp_path / "cam.yaml"), str(tmp_path / "snap.png"),
                                          "--out", str(tmp_path / "grid.png"), "--camera", "cam-road"])
    assert result.exit_code == exit_code, result.output
    if exit_code == 0:
        grid = cv2.imread(str(tmp_path / "grid.png"))
        u, v = (int(round(c)) for c in sr.project(0.0, 20.0))
        assert (grid[v - 1:v + 2, u - 1:u + 2] != 40).any()  # a grid line where the road's 0 m, 20 m point is
    else:
        assert "no `calibration`" in result.output
