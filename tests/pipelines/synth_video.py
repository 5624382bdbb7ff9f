"""Generated test videos rendered from real frames: the real road video (`road-cars.mp4`) as the
moving background, a real vehicle crop (the red car of its first frame) pasted on the hard
shoulder for a known interval, and a real object crop (a roadside marker post, lying down) pasted on the
right shoulder of the carriageway for another interval. The ground truth is returned with it.

    python tests/pipelines/synth_video.py /tmp/synth.mp4      # also used by bench scripts
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import cv2
import numpy as np

SIZE = (640, 360)  # width, height of the generated video
STABLE_FROM = 110  # first source frame after the camera stopped moving
# Crops in the 1280x720 source frame 0 of road-cars.mp4 (x1, y1, x2, y2).
CAR_CROP = (520, 370, 715, 525)  # the red hatchback, seen from the front
DEBRIS_CROP = (1243, 176, 1267, 338)  # the red/white roadside marker post: pasted lying down
# Where they are pasted in the generated frame: (x, bottom y, width) in output pixels.
CAR_AT = (150, 338, 96)  # on the left hard shoulder
DEBRIS_AT = (515, 206, 80)  # fallen on the right hard shoulder, off the lanes

# Zones (normalised) that the tests and configs/streams.yaml use for this video.
KERB_ZONE = [(0.10, 0.55), (0.30, 0.55), (0.42, 1.0), (0.16, 1.0)]
ROAD_ZONE = [(0.30, 0.33), (0.60, 0.30), (1.0, 0.55), (1.0, 1.0), (0.20, 1.0)]


@dataclass(frozen=True)
class SynthTruth:
    fps: float
    duration_s: float
    car_s: tuple[float, float]  # the car stands there from .. to (video seconds)
    debris_s: tuple[float, float]
    car_box: tuple[int, int, int, int]
    debris_box: tuple[int, int, int, int]


def _paste(frame: np.ndarray, crop: np.ndarray, at: tuple[int, int, int]) -> tuple[int, int, int, int]:
    x, bottom, width = at
    h = round(crop.shape[0] * width / crop.shape[1])
    patch = cv2.resize(crop, (width, h), interpolation=cv2.INTER_AREA)
    y = bottom - h
    # Feather the border so the paste has no hard rectangular outline.
    mask = np.zeros((h, width), np.float32)
    mask[2:-2, 2:-2] = 1.0
    mask = cv2.GaussianBlur(mask, (5, 5), 0)[..., None]
    region = frame[y:bottom, x:x + width].astype(np.float32)
    frame[y:bottom, x:x + width] = (mask * patch + (1 - mask) * region).astype(np.uint8)
    return (x, y, x + width, bottom)


def _background_frames(road_video: Path, size: tuple[int, int] = SIZE) -> list[np.ndarray]:
    # The source camera pans during its first ~3.5 s; a fixed traffic camera is what we model.
    with av.open(str(road_video)) as container:
        return [cv2.resize(f.to_ndarray(format="rgb24"), size, interpolation=cv2.INTER_AREA)
                for i, f in enumerate(container.decode(video=0)) if i >= STABLE_FROM]


def _crops(road_video: Path) -> tuple[np.ndarray, np.ndarray]:
    with av.open(str(road_video)) as container:
        first = next(container.decode(video=0)).to_ndarray(format="rgb24")
    cx1, cy1, cx2, cy2 = CAR_CROP
    dx1, dy1, dx2, dy2 = DEBRIS_CROP
    return first[cy1:cy2, cx1:cx2].copy(), np.ascontiguousarray(np.rot90(first[dy1:dy2, dx1:dx2]))


def make_video(out: Path, shared_dir: Path, *, fps: float = 10.0, duration_s: float = 16.0,
               car_s: tuple[float, float] = (3.0, 12.0), debris_s: tuple[float, float] = (4.0, 14.0),
               scale: int = 1) -> SynthTruth:
    """Write an H.264 MP4 to `out` and return where and when the objects are. `scale` 2 renders the
    same scene at 1280x720 (the road video's own pixels) instead of 640x360."""
    road = shared_dir / "data" / "video" / "road-cars.mp4"
    size = (SIZE[0] * scale, SIZE[1] * scale)
    car_at, debris_at = (tuple(v * scale for v in at) for at in (CAR_AT, DEBRIS_AT))
    background = _background_frames(road, size)
    car, debris = _crops(road)
    src_fps = 30.0
    car_box = debris_box = (0, 0, 0, 0)
    out.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(out), "w") as container:
        stream = container.add_stream("libx264", rate=int(fps))
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "20", "preset": "veryfast", "g": str(int(fps))}
        n = int(round(duration_s * fps))
        period = 2 * (len(background) - 1)
        for k in range(n):
            t = k / fps
            i = int(round(t * src_fps)) % period
            i = i if i < len(background) else period - i  # ping-pong: no jump at the loop point
            frame = background[i].copy()
            if car_s[0] <= t < car_s[1]:
                car_box = _paste(frame, car, car_at)
            if debris_s[0] <= t < debris_s[1]:
                debris_box = _paste(frame, debris, debris_at)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return SynthTruth(fps, duration_s, car_s, debris_s, car_box, debris_box)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from hub.settings import get_settings

    truth = make_video(Path(sys.argv[1] if len(sys.argv) > 1 else "synth.mp4"), get_settings().shared_dir)
    print(json.dumps(asdict(truth)))
