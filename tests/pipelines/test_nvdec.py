"""NVDEC decoding (pipelines/nvdec.py) on a machine without a GPU: everything but the hardware call.

- the backend choice and codec table;
- the Annex-B packets NVDEC's parser is fed, and the display order their times come out in, against
  FFmpeg's own CPU decoder on the real road video;
- a device frame's analysis resize and snapshot copy (tests/pipelines/test_decode.py runs frames
  held as tensors through the whole camera loop).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hub.errors import InvalidInput
from pipelines import sources
from pipelines.decode import NativeFrame, host_rgb, to_analysis
from pipelines.nvdec import DeviceFrame, PtsQueue, annexb_packets, codec_plan, resolve_backend


@pytest.mark.parametrize("backend,available,expected", [
    ("cpu", True, "cpu"), ("cpu", False, "cpu"),
    ("auto", True, "nvdec"), ("auto", False, "cpu"),
    ("nvdec", True, "nvdec"), ("nvdec", False, InvalidInput),
    ("vaapi", True, InvalidInput),
])
def test_backend_choice(backend, available, expected):
    if expected is InvalidInput:
        with pytest.raises(InvalidInput):
            resolve_backend(backend, available)
    else:
        assert resolve_backend(backend, available) == expected


def _has_pynvc() -> bool:
    import importlib.util

    return importlib.util.find_spec("PyNvVideoCodec") is not None


@pytest.mark.parametrize("codec,expected", [
    ("h264", ("H264", "h264_mp4toannexb")), ("hevc", ("HEVC", "hevc_mp4toannexb")), ("av1", ("AV1", None)),
    ("mjpeg", ("JPEG", None)), ("rawvideo", InvalidInput), ("theora", InvalidInput),
])
def test_codec_plan(codec, expected):
    if expected is InvalidInput:
        with pytest.raises(InvalidInput):
            codec_plan(codec)
    else:
        assert codec_plan(codec) == expected


@pytest.mark.parametrize("pushed,popped", [
    ([(0, True), (2048, False), (1024, False), (512, False), (1536, False)], [0, 512, 1024, 1536, 2048]),
    ([(None, True), (None, False)], [None, None]),  # no times: decode order, times None
    ([], [None]),  # more pictures than packets: no time rather than a wrong one
])
def test_pts_queue_hands_out_display_order(pushed, popped):
    q = PtsQueue()
    for pts, key in pushed:
        q.push(pts, None, key)
    out = [q.pop()[0] for _ in popped]
    assert out == popped


def test_annexb_packets_match_ffmpegs_own_decoder(shared_dir):
    """The packets NVDEC gets: Annex-B start codes, one per picture, and -- popped in display order
    -- exactly the times and key frames FFmpeg's CPU decoder gives on the same file."""
    import av

    video = str(shared_dir / "data/video/road-cars.mp4")
    queue, starts, n_packets = PtsQueue(), set(), 0
    with av.open(video) as container:
        stream = container.streams.video[0]
        for packet in annexb_packets(container, stream):
            starts.add(bytes(packet)[:4])
            queue.push(packet.pts, packet.dts, packet.is_keyframe)
            n_packets += 1
        base = stream.time_base
    with av.open(video) as container:
        cpu = [(f.pts, bool(f.key_frame)) for f in container.decode(video=0)]
    assert starts == {b"\x00\x00\x00\x01"}
    assert n_packets == len(cpu)
    popped = [queue.pop() for _ in cpu]
    assert popped == cpu
    times = [float(pts * base) for pts, _ in popped]
    assert times == sorted(set(times))  # strictly increasing video time


def _frame(shared_dir):
    import av

    with av.open(str(shared_dir / "data/video/road-cars.mp4")) as container:
        return next(container.decode(video=0))


def test_device_frames_resize_on_their_device_and_snapshot_to_host(shared_dir):
    av_frame = _frame(shared_dir)
    rgb = av_frame.to_ndarray(format="rgb24")
    dev = DeviceFrame(torch.from_numpy(rgb.copy()), av_frame.time, True)
    small = to_analysis(dev, 640)
    assert isinstance(small, torch.Tensor) and tuple(small.shape) == (360, 640, 3) and small.dtype == torch.uint8
    cpu_small = to_analysis(av_frame, 640)
    assert np.abs(host_rgb(small).astype(int) - cpu_small.astype(int)).mean() < 2.0
    native = NativeFrame(dev)
    dev.tensor.zero_()  # the decoder recycles its surface: the snapshot must not see that
    assert (native.width, native.height) == (1280, 720)
    assert np.array_equal(native.rgb(), rgb)


def test_nvdec_mode_without_a_gpu_refuses_the_camera():
    cfg = sources.SourceConfig(url="/nonexistent.mp4", decode=sources.DecodeOptions(backend="nvdec"))
    if torch.cuda.is_available() and _has_pynvc():
        pytest.skip("this box can decode on NVDEC")
    with pytest.raises(InvalidInput, match="nvdec"):
        sources.FrameSource("cam", cfg)


@pytest.mark.skipif(not (torch.cuda.is_available() and _has_pynvc()), reason="needs a CUDA GPU and PyNvVideoCodec")
def test_nvdec_decodes_what_ffmpeg_decodes(shared_dir):
    """On a CUDA box: the hardware decoder's pictures carry FFmpeg's times and key frames, in display
    order, and the same pixels up to colour-conversion rounding."""
    import av

    from pipelines.nvdec import nvdec_frames

    video = str(shared_dir / "data/video/road-cars.mp4")
    with av.open(video) as container:
        cpu = [(f.time, bool(f.key_frame), f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]
    with av.open(video) as container:
        gpu = [(f.time, f.key_frame, host_rgb(f.tensor.clone())) for f in nvdec_frames(container, container.streams.video[0])]
    assert [(t, k) for t, k, _ in gpu] == [(t, k) for t, k, _ in cpu]
    for (_, _, a), (_, _, b) in zip(cpu[::30], gpu[::30], strict=True):
        assert a.shape == b.shape
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 3.0


def _failing_nvdec(container, stream, *, gpu_id: int = 0):
    raise RuntimeError("cuvidCreateDecoder: CUDA_ERROR_NOT_SUPPORTED")
    yield  # a generator, like the real one


@pytest.mark.parametrize("backend,decoder_after,frames", [("auto", "cpu", True), ("nvdec", "nvdec", False)])
def test_a_failing_nvdec_falls_back_to_the_cpu_only_under_auto(backend, decoder_after, frames, shared_dir,
                                                                monkeypatch):
    monkeypatch.setattr(sources, "resolve_backend", lambda b: "nvdec")
    monkeypatch.setattr(sources, "nvdec_frames", _failing_nvdec)
    cfg = sources.SourceConfig(url=str(shared_dir / "data/video/road-cars.mp4"), analysis_fps=5.0, realtime=False,
                               backoff_initial_s=0.01, backoff_max_s=0.02, max_failures=3,
                               decode=sources.DecodeOptions(max_side_px=640, backend=backend))
    src = sources.FrameSource("cam", cfg).start()
    try:
        frame = src.get(timeout_s=20.0)
    finally:
        src.stop()
    assert (frame is not None) == frames
    assert src.stats().decoder == decoder_after
    if frames:
        assert isinstance(frame.image, np.ndarray) and frame.image.shape == (360, 640, 3)
