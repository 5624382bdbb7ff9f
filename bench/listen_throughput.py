"""Throughput of `listen` (default Whisper base) on this machine: single calls one after another, then the
same calls decoded together as one batch across requests (what `@serve.batch` hands the replica), or
sent concurrently to a running hub with `--url`.

    .venv/bin/python bench/listen_throughput.py                     # in-process, CPU, both clips
    .venv/bin/python bench/listen_throughput.py --device cuda       # CTranslate2's CUDA build
    .venv/bin/python bench/listen_throughput.py --url http://127.0.0.1:8000 --concurrency 4

RTF = processing seconds / audio seconds (below 1: faster than real time). Throughput = audio seconds
transcribed per wall-clock second. The batched/concurrent numbers are printed as ratios against the
sequential baseline measured in the same run, so a busy machine skews both sides alike.
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

CLIPS = {"zh": "data/speech/zh-aishell-BAC009S0724W0121.wav", "en": "data/speech/en-librispeech-1995-1837-0001.wav"}


def _in_process(shared: Path, device: str, artifact: Path | None):
    from hub.contract import ModelInfo, run_batch
    from models.asr import ListenRequest, SpeechRecognizer, prepare_default

    if artifact is None:
        artifact = Path(tempfile.mkdtemp(prefix="listen-bench-"))
        prepare_default(shared, artifact)
    asr = SpeechRecognizer()
    asr.load(artifact, device)
    info = ModelInfo(name="whisper-base", version="bench")

    def call(batch: list[bytes]) -> list:
        return run_batch(asr, [ListenRequest(audio=a) for a in batch], info)

    return call


def _over_http(url: str, api_key: str | None, concurrency: int):
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    client = httpx.Client(base_url=url, headers=headers, timeout=600)
    pool = ThreadPoolExecutor(concurrency)

    def one(audio: bytes) -> dict:
        reply = client.post("/v1/listen", json={"audio": base64.b64encode(audio).decode()})
        reply.raise_for_status()
        return reply.json()

    def call(batch: list[bytes]) -> list:
        return list(pool.map(one, batch))  # concurrent requests: the hub batches them

    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--artifact", type=Path, default=None, help="a built listen artifact (default: build one)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--url", default=None, help="a running hub: measure over HTTP instead of in-process")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--concurrency", type=int, default=4, help="requests decoded together / in flight")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args()

    from models.audio import decode_audio

    audio = {lang: (args.shared / path).read_bytes() for lang, path in CLIPS.items()}
    seconds = {lang: decode_audio(a).duration_s for lang, a in audio.items()}
    call = (_over_http(args.url, args.api_key, args.concurrency) if args.url
            else _in_process(args.shared, args.device, args.artifact))
    call([audio["en"]])  # warm-up: first-call allocations are not throughput

    out: dict = {"device": args.device, "via": "http" if args.url else "in-process", "concurrency": args.concurrency}
    for lang in CLIPS:
        single = []
        for _ in range(args.rounds):
            started = time.perf_counter()
            call([audio[lang]])
            single.append(time.perf_counter() - started)
        seq_s = statistics.median(single)
        batch = [audio[lang]] * args.concurrency
        together = []
        for _ in range(args.rounds):
            started = time.perf_counter()
            call(batch)
            together.append(time.perf_counter() - started)
        batch_s = statistics.median(together)
        row = {
            "audio_s": round(seconds[lang], 2),
            "single_rtf": round(seq_s / seconds[lang], 3),
            "single_throughput_audio_s_per_s": round(seconds[lang] / seq_s, 2),
            "concurrent_throughput_audio_s_per_s": round(args.concurrency * seconds[lang] / batch_s, 2),
            "concurrent_vs_single": round(args.concurrency * seq_s / batch_s, 2),
            "concurrent_latency_s": round(batch_s, 2),
        }
        out[lang] = row
        print(f"{lang}: {seconds[lang]:.1f} s clip | single: RTF {row['single_rtf']:.3f} "
              f"({row['single_throughput_audio_s_per_s']:.1f} audio-s/s) | {args.concurrency} together: "
              f"{row['concurrent_throughput_audio_s_per_s']:.1f} audio-s/s = {row['concurrent_vs_single']:.2f}x "
              f"single, each answered in {row['concurrent_latency_s']:.1f} s")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
