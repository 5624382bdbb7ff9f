"""Cheap CPU decoding for analysis: what a camera's reader does with each decoded FFmpeg frame.

A camera is decoded on the CPU by FFmpeg (PyAV); three things keep that cheap:

- **Scale while converting.** A sampled frame is converted to RGB straight at the detector's input
  size (`max_side_px`, e.g. 640: a 1280x720 frame becomes 640x360) in one swscale pass, instead
  of converting the full frame and letting the detector shrink it. The decoded frame itself is
  kept in its native form (`NativeFrame`): an event's evidence snapshot converts it to full-size
  RGB only when a rule fires.
- **Decode less.** `SkipPolicy` asks FFmpeg's decoder to drop frames nobody will analyse:
  non-reference frames (`skip_frame = NONREF`, most B-frames: about half of the decode work of a
  30 fps camera analysed at <= 15 fps) when the analysis period spans at least two source frames,
  and everything but key frames (`NONKEY`) once the observed key-frame interval is no longer than
  the analysis period. A sampled frame may then come up to one source frame later than its due
  time (live cameras only: offline analysis keeps every frame exact).
- **Bounded threads.** `threads` FFmpeg threads per camera (1 by default in the stream manager):
  FFmpeg's default, one thread per core for every camera, oversubscribes a box that runs many
  cameras and starves the detector.

On a CUDA box `backend: nvdec` (or `auto`) decodes on the GPU's hardware decoder instead
(pipelines/nvdec.py): the reader then yields `DeviceFrame`s, `to_analysis` resizes them on the device
and the analysis image stays a CUDA tensor up to the detector; `host_rgb` brings an image back to
host memory where a consumer needs one (snapshots, the UI thumbnail, the spill rule's work copy).

>>> opts = DecodeOptions(max_side_px=640, threads=1, skip_frames=True)
>>> analysis_size(1280, 720, 640)
(640, 360)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pipelines.nvdec import DeviceFrame

NONREF_MIN_FRAMES = 2.0  # skip non-reference frames when a sample is due at most every 2 source frames
NONKEY_SLACK = 1.05  # key frames at most 5 % further apart than the analysis period still keep the rate


@dataclass(frozen=True)
class DecodeOptions:
    """How a camera is decoded. `max_side_px`: longest side of the analysis image (None: native);
    `threads`: FFmpeg decoder threads (0: FFmpeg's choice, one per core); `skip_frames`: let the
    decoder drop frames the analysis rate does not need (see the module doc); `backend`: "cpu",
    "nvdec" or "auto" (NVDEC when a GPU and PyNvVideoCodec are there)."""

    max_side_px: int | None = None
    threads: int = 0
    skip_frames: bool = False
    backend: str = "cpu"


def analysis_size(width: int, height: int, max_side_px: int | None) -> tuple[int, int]:
    """(width, height) of the analysis image: the native size scaled down so its longest side is
    `max_side_px` (never up), e.g. `analysis_size(1920, 1080, 640) == (640, 360)`."""
    if not max_side_px or max(width, height) <= max_side_px:
        return width, height
    r = max_side_px / max(width, height)
    return max(1, round(width * r)), max(1, round(height * r))


class NativeFrame:
    """A decoded frame in its native form (FFmpeg's YUV planes, or NVDEC's RGB surface copied on the
    device, full size), converted to full-size host RGB only when asked (an event's snapshot)."""

    __slots__ = ("_frame", "height", "width")

    def __init__(self, frame: Any) -> None:
        # NVDEC recycles its surface on the next decode: keep a device copy (no host transfer).
        self._frame = frame.tensor.clone() if isinstance(frame, DeviceFrame) else frame
        self.width, self.height = int(frame.width), int(frame.height)

    def rgb(self) -> np.ndarray:
        if hasattr(self._frame, "to_ndarray"):  # a PyAV frame
            return self._frame.to_ndarray(format="rgb24")
        return host_rgb(self._frame)


def host_rgb(image: Any) -> np.ndarray:
    """An HxWx3 uint8 image in host memory: numpy as it is, a (device) torch tensor copied back."""
    if isinstance(image, np.ndarray):
        return image
    return image.detach().cpu().numpy()


def device_resize(tensor: Any, size_hw: tuple[int, int]) -> Any:
    """HxWx3 uint8 tensor -> size_hw x 3 uint8 on its own device, averaging the source pixels each
    target pixel covers (what swscale's AREA does on the CPU path)."""
    import torch.nn.functional as F

    x = tensor.permute(2, 0, 1)[None].float()
    y = F.interpolate(x, size=size_hw, mode="area")
    return y[0].round_().clamp_(0, 255).to(tensor.dtype).permute(1, 2, 0).contiguous()


def to_analysis(av_frame: Any, max_side_px: int | None) -> Any:
    """The frame as HxWx3 uint8 RGB at analysis size: from a PyAV frame one swscale pass to a numpy
    array; from an NVDEC `DeviceFrame` an area resize on the GPU to a CUDA tensor (a new tensor, so
    the decoder's surface may be recycled)."""
    w, h = analysis_size(int(av_frame.width), int(av_frame.height), max_side_px)
    if isinstance(av_frame, DeviceFrame):
        if (w, h) == (av_frame.width, av_frame.height):
            return av_frame.tensor.clone()
        return device_resize(av_frame.tensor, (h, w))
    if (w, h) == (av_frame.width, av_frame.height):
        return av_frame.to_ndarray(format="rgb24")
    # AREA averages the source pixels a target pixel covers: what a detector's resize would see.
    return av_frame.to_ndarray(format="rgb24", width=w, height=h, interpolation="AREA")


class SkipPolicy:
    """Which frames the decoder may drop for one connection (see the module doc).

    `mode` is FFmpeg's `skip_frame` value to set on the codec context: "DEFAULT" (decode all),
    "NONREF" or "NONKEY". Call `observe(key_frame, ts_s)` for every decoded frame; it returns the
    mode to use from now on.
    """

    def __init__(self, enabled: bool, period_s: float, frame_interval_s: float) -> None:
        self.enabled = enabled and period_s > 0
        self.period_s = period_s
        nonref = self.enabled and period_s >= NONREF_MIN_FRAMES * frame_interval_s - 1e-9
        self.base = "NONREF" if nonref else "DEFAULT"
        self.mode = self.base
        self._last_key_s: float | None = None
        self.key_interval_s: float | None = None

    def set_period(self, period_s: float) -> None:
        self.period_s = period_s

    def observe(self, key_frame: bool, ts_s: float) -> str:
        if not self.enabled:
            return self.mode
        if key_frame:
            if self._last_key_s is not None and ts_s > self._last_key_s:
                self.key_interval_s = ts_s - self._last_key_s
            self._last_key_s = ts_s
        keys_suffice = self.key_interval_s is not None and self.key_interval_s <= self.period_s * NONKEY_SLACK
        self.mode = "NONKEY" if keys_suffice else self.base
        return self.mode
