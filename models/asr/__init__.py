"""Capability `listen` (speech recognition): see `models.asr.recognizer` for the contract.

>>> from models.asr import SpeechRecognizer, ListenRequest, prepare_default
"""

from models.asr.artifacts import (
    describe_artifact,
    download_whisper,
    prepare_default,
    prepare_pocketsphinx,
    prepare_tiny_en,
)
from models.asr.recognizer import ListenRequest, ListenResponse, SpeechRecognizer, SpeechSegment
from models.asr.wer import character_error_rate, word_error_rate

__all__ = [
    "ListenRequest",
    "ListenResponse",
    "SpeechRecognizer",
    "SpeechSegment",
    "character_error_rate",
    "describe_artifact",
    "download_whisper",
    "prepare_default",
    "prepare_pocketsphinx",
    "prepare_tiny_en",
    "word_error_rate",
]
