"""GPU hardware decoding (NVDEC, through NVIDIA's PyNvVideoCodec) for cameras on a CUDA box.

Why this shape:
- **PyAV still opens and demuxes the stream**, so a camera's URL, FFmpeg options, timeouts, the
  outbound guard and video time behave exactly as on the CPU path; only the compressed packets go
  to NVDEC. MP4/MKV carry H.264/HEVC length-prefixed: FFmpeg's `*_mp4toannexb` bitstream filter
  rewrites them into the Annex-B stream the hardware parser reads (a no-op for RTSP's Annex-B).
- **Frames stay on the GPU.** NVDEC converts to interleaved RGB on the device; `DeviceFrame` wraps
  that surface as a torch tensor (DLPack, no copy), the analysis image is an area-resize on the
  device (`to_analysis` in pipelines/decode.py), and the detector's collator letterboxes it in place.
  Only an event's evidence snapshot (and the UI thumbnail) is copied back to host memory.
- **Display order.** With B-frames NVDEC returns pictures in display order, not packet order; each
  access unit yields one picture, so the smallest presentation time still pending belongs to the
  next picture out (`PtsQueue`).

Chosen over DALI (pipeline-graph API built for training input, no live RTSP reader) and
torchcodec (its CUDA decoder opens files/URLs itself, so the guard and options would be bypassed).
The decoder surface is recycled by the next `Decode` call: a frame must be converted (resized or
cloned) before the generator is advanced, which `FrameSource` does.

>>> backend = resolve_backend("auto")        # "nvdec" on a CUDA box with PyNvVideoCodec, else "cpu"
>>> for frame in nvdec_frames(container, container.streams.video[0]):
...     frame.time, frame.key_frame, frame.tensor.shape    # (8.4, False, (1080, 1920, 3)) on cuda:0
"""

from __future__ import annotations

import heapq
import importlib.util
from collections.abc import Iterator
from typing import Any

from hub.errors import InvalidInput

# FFmpeg codec name -> (PyNvVideoCodec's cudaVideoCodec member, bitstream filter to Annex-B or None)
CODECS: dict[str, tuple[str, str | None]] = {
    "h264": ("H264", "h264_mp4toannexb"),
    "hevc": ("HEVC", "hevc_mp4toannexb"),
    "av1": ("AV1", None),
    "vp9": ("VP9", None),
    "vp8": ("VP8", None),
    "mpeg2video": ("MPEG2", None),
    "mpeg4": ("MPEG4", None),
    "mjpeg": ("JPEG", None),
}
BACKENDS = ("cpu", "nvdec", "auto")


def nvdec_available() -> bool:
    """PyNvVideoCodec is installed and torch sees a CUDA device (NVDEC needs both)."""
    if importlib.util.find_spec("PyNvVideoCodec") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


def resolve_backend(backend: str, available: bool | None = None) -> str:
    """"cpu" or "nvdec" for a configured backend: "auto" picks NVDEC when it can run, "nvdec"
    without it is a configuration error (a silent CPU fallback would hide a 10x CPU bill)."""
    if backend not in BACKENDS:
        raise InvalidInput(f"decode backend {backend!r} is not one of {BACKENDS}", field="decode.backend")
    ok = nvdec_available() if available is None and backend != "cpu" else bool(available)
    if backend == "auto":
        return "nvdec" if ok else "cpu"
    if backend == "nvdec" and not ok:
        raise InvalidInput("decode backend 'nvdec' needs a CUDA GPU and the PyNvVideoCodec package "
                           "(pip install 'ezhou-hub[nvdec]'); use 'auto' to fall back to the CPU",
                           field="decode.backend")
    return backend


def codec_plan(codec_name: str) -> tuple[str, str | None]:
    """(cudaVideoCodec member, bitstream filter) for an FFmpeg codec name; InvalidInput if NVDEC has none."""
    try:
        return CODECS[codec_name]
    except KeyError:
        raise InvalidInput(f"NVDEC cannot decode codec {codec_name!r} (it decodes {sorted(CODECS)})") from None


class PtsQueue:
    """Presentation times of packets sent to the decoder, handed out smallest first: the order in
    which pictures leave a decoder that outputs in display order. Remembers which were key frames;
    a packet without a time keeps its place in decode order and hands out `None`."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, int | None, bool]] = []
        self._order = 0

    def push(self, pts: int | None, dts: int | None, key_frame: bool) -> None:
        sort_key = pts if pts is not None else dts if dts is not None else (self._heap[-1][0] if self._heap else 0)
        self._order += 1
        heapq.heappush(self._heap, (sort_key, self._order, pts, key_frame))

    def pop(self) -> tuple[int | None, bool]:
        """(pts, key_frame) of the next picture out; (None, False) if the decoder gave more than it got."""
        if not self._heap:
            return None, False
        _, _, pts, key = heapq.heappop(self._heap)
        return pts, key


def annexb_packets(container: Any, stream: Any) -> Iterator[Any]:
    """`stream`'s packets as NVDEC's parser reads them (Annex-B for H.264/HEVC), in decode order."""
    import av

    _, bsf_name = codec_plan(stream.codec_context.name)
    bsf = av.BitStreamFilterContext(bsf_name, stream) if bsf_name else None
    for packet in container.demux(stream):
        if packet.size == 0:
            continue  # FFmpeg's end-of-stream marker
        yield from bsf.filter(packet) if bsf is not None else (packet,)


class DeviceFrame:
    """One decoded picture on the GPU, shaped like the PyAV frame the CPU path reads: `time` (s),
    `key_frame`, `width`, `height`; `tensor` is HxWx3 uint8 RGB on the device (valid until the
    decoder is advanced: convert or clone it first)."""

    __slots__ = ("height", "key_frame", "tensor", "time", "width")

    def __init__(self, tensor: Any, time_s: float | None, key_frame: bool) -> None:
        self.tensor = tensor
        self.time = time_s
        self.key_frame = key_frame
        self.height, self.width = int(tensor.shape[0]), int(tensor.shape[1])


def nvdec_frames(container: Any, stream: Any, *, gpu_id: int = 0) -> Iterator[DeviceFrame]:
    """Decode `stream` of an open PyAV `container` on NVDEC; yields `DeviceFrame`s in display order."""
    import PyNvVideoCodec as nvc
    import torch

    member, _ = codec_plan(stream.codec_context.name)
    torch.cuda.init()  # the decoder shares the primary context torch uses (cudacontext=0)
    decoder = nvc.CreateDecoder(gpuid=gpu_id, codec=getattr(nvc.cudaVideoCodec, member), cudacontext=0,
                                cudastream=0, usedevicememory=True, outputColorType=nvc.OutputColorType.RGB,
                                latency=nvc.DisplayDecodeLatencyType.LOW)
    base = stream.time_base
    pending = PtsQueue()

    def pictures(data: Any) -> Iterator[DeviceFrame]:
        for surface in decoder.Decode(data):
            pts, key = pending.pop()
            t = float(pts * base) if pts is not None and base is not None else None
            yield DeviceFrame(torch.from_dlpack(surface), t, key)

    for packet in annexb_packets(container, stream):
        pending.push(packet.pts, packet.dts, packet.is_keyframe)
        data = nvc.PacketData()
        data.bsl_data, data.bsl = packet.buffer_ptr, packet.size
        data.decode_flag = nvc.VideoPacketFlag.ENDOFPICTURE  # LOW latency: decode now, not 4 frames on
        yield from pictures(data)
    flush = nvc.PacketData()
    flush.bsl_data, flush.bsl = 0, 0
    yield from pictures(flush)
