"""The candidate classifiers `hub train reason` compares. Each `fit` returns a head of
`models.textcls.heads`, so what is evaluated here is exactly what serving loads.

- `tfidf`      char 1-3-gram TF-IDF + linear SVM (class-balanced): the baseline.
- `e5-linear`  logistic regression on the 384-d e5 vectors.
- `hybrid`     one linear SVM over TF-IDF and 2 x e5 vectors side by side.
- `char-bert`  a compact BERT over characters (transformers), trained from scratch on CPU;
               optionally its embeddings start from the Tencent 200-d character vectors.
- `subject-hybrid`  `hybrid` plus the subject line (its own TF-IDF and 2 x its e5 vector): the second
               head of an artifact, trained when the data has subjects (not a rival of the others: it
               answers only requests that give a subject). Lead's 5-fold CV over 3 seeds, 395 messages:
               0.862 accuracy vs 0.810 for `hybrid`; subject weights 1/2 vs 1/1 (0.857), 0.7/1.5 (0.862).

>>> head = make_candidate("tfidf").fit(texts, y, vectors=None, n_classes=7)
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from models.textcls.heads import CharBertHead, LinearHead, SubjectBlock, TfidfFeatures

NAMES = ("tfidf", "e5-linear", "hybrid", "char-bert")
FAST = ("tfidf", "e5-linear", "hybrid")  # the default model's candidates: seconds, not minutes
SUBJECT = "subject-hybrid"  # the subject-aware head's candidate


def _full_coef(coef: np.ndarray, intercept: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    # sklearn keeps one row for two classes (the positive one): logits [0, f] give the same softmax
    if coef.shape[0] == 1 and n_classes == 2:
        return np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], intercept])
    return coef, intercept


def _tfidf(texts: Sequence[str]):
    from sklearn.feature_extraction.text import TfidfVectorizer

    # min_df=2 drops n-grams seen once: ~40% of the vocabulary, none of the accuracy
    return TfidfVectorizer(analyzer="char", ngram_range=(1, 3), min_df=2, sublinear_tf=True).fit(texts)


@dataclass(frozen=True)
class LinearCandidate:
    name: str
    use_tfidf: bool
    embedding_weight: float  # 0: no e5 part
    model: str  # "svm" | "logreg"
    c: float
    seed: int = 0
    subject_tfidf_weight: float = 0.0  # both 0: the text alone
    subject_embedding_weight: float = 0.0

    @property
    def uses_embeddings(self) -> bool:
        return self.embedding_weight > 0

    @property
    def uses_subject(self) -> bool:
        return self.subject_tfidf_weight > 0 or self.subject_embedding_weight > 0

    @property
    def kind(self) -> str:
        if self.uses_subject:
            return "subject-hybrid-linear"
        return {(True, False): "tfidf-linear", (False, True): "e5-linear"}.get(
            (self.use_tfidf, self.uses_embeddings), "hybrid-linear")

    def params(self) -> dict:
        return {**asdict(self), "kind": self.kind, "tfidf": "char 1-3-gram, min_df=2, sublinear tf" if self.use_tfidf
                else "none"}

    def fit(self, texts: Sequence[str], y: np.ndarray, vectors: np.ndarray | None, n_classes: int,
            subjects: Sequence[str] | None = None, subject_vectors: np.ndarray | None = None) -> LinearHead:
        from sklearn.linear_model import LogisticRegression
        from sklearn.svm import LinearSVC

        tfidf = TfidfFeatures.from_vectorizer(_tfidf(texts)) if self.use_tfidf else None
        subject = None
        if self.uses_subject:
            if subjects is None:
                raise ValueError(f"{self.name} needs subjects")
            subject = SubjectBlock(TfidfFeatures.from_vectorizer(_tfidf(subjects)), self.subject_tfidf_weight,
                                   self.subject_embedding_weight)
        head = LinearHead(self.kind, np.zeros((0, 0)), np.zeros(0), tfidf, self.embedding_weight, subject)
        x = head.features(texts, vectors, subjects, subject_vectors)
        if self.model == "svm":
            clf = LinearSVC(C=self.c, class_weight="balanced", random_state=self.seed, max_iter=5000)
        else:
            clf = LogisticRegression(C=self.c, class_weight="balanced", max_iter=5000)
        clf.fit(x, y)
        coef, intercept = _full_coef(clf.coef_, clf.intercept_, n_classes)
        return LinearHead(self.kind, coef.astype(np.float64), intercept.astype(np.float64), tfidf,
                          self.embedding_weight, subject)


@dataclass(frozen=True)
class BertParams:
    hidden_size: int = 200  # 200: the Tencent vectors fit the embedding table as they are
    layers: int = 2
    heads: int = 4
    intermediate_size: int = 400
    max_len: int = 128
    epochs: int = 12
    batch_size: int = 16
    learning_rate: float = 5e-4
    dropout: float = 0.1
    init_vectors: bool = True  # use ../shared/models/text Tencent character vectors when present
    # None: half the cores. Two torch threads on two cores that other processes also use wait on
    # each other at every op: measured 4.2 s/epoch with 1 thread vs 8.7-16.6 s with 2 on a busy box.
    threads: int | None = None


@dataclass(frozen=True)
class CharBertCandidate:
    name: str = "char-bert"
    params_: BertParams = field(default_factory=BertParams)
    vectors_dir: Path | None = None  # ../shared/models/text
    seed: int = 0
    kind: str = "char-bert"
    uses_embeddings: bool = False

    def params(self) -> dict:
        return {**asdict(self.params_), "kind": self.kind, "seed": self.seed,
                "vectors": str(self.vectors_dir) if self.vectors_dir else "none"}

    def _vocabulary(self, texts: Sequence[str]) -> tuple[list[str], np.ndarray | None]:
        p = self.params_
        tencent = _tencent_vectors(self.vectors_dir) if p.init_vectors and self.vectors_dir else None
        if tencent is not None and p.hidden_size == tencent[1].shape[1]:
            chars, vectors = tencent
        else:  # characters seen at least twice in the training texts
            counts: dict[str, int] = {}
            for text in texts:
                for ch in text:
                    counts[ch] = counts.get(ch, 0) + 1
            chars, vectors = sorted(c for c, n in counts.items() if n >= 2), None
        return ["[PAD]", "[UNK]", "[CLS]", *chars], vectors

    def fit(self, texts: Sequence[str], y: np.ndarray, vectors: np.ndarray | None, n_classes: int,
            progress: bool = False) -> CharBertHead:
        from gpu.compat import ensure_torchvision

        ensure_torchvision()  # transformers imports torchvision
        import torch

        p = self.params_
        torch.manual_seed(self.seed)
        threads_before = torch.get_num_threads()
        torch.set_num_threads(p.threads or max(1, (os.cpu_count() or 2) // 2))
        try:
            return self._train(texts, y, n_classes, progress)
        finally:
            torch.set_num_threads(threads_before)

    def _train(self, texts: Sequence[str], y: np.ndarray, n_classes: int, progress: bool) -> CharBertHead:
        import torch
        from transformers import BertConfig, BertForSequenceClassification

        p = self.params_
        itos, init = self._vocabulary(texts)
        config = BertConfig(vocab_size=len(itos), hidden_size=p.hidden_size, num_hidden_layers=p.layers,
                            num_attention_heads=p.heads, intermediate_size=p.intermediate_size,
                            max_position_embeddings=p.max_len, num_labels=n_classes,
                            hidden_dropout_prob=p.dropout, attention_probs_dropout_prob=p.dropout)
        model = BertForSequenceClassification(config)
        if init is not None:
            # Tencent vectors have std ~0.26; scale them to the std BERT initialises with (x5) so
            # that they neither swamp the position embeddings nor vanish beside them.
            table = model.bert.embeddings.word_embeddings.weight.data
            table[3:] = torch.from_numpy((init / init.std() * 0.1).astype(np.float32))
        head = CharBertHead(model, itos, p.max_len)
        ids, mask = head.encode(list(texts))
        labels = torch.as_tensor(y, dtype=torch.long)
        optimiser = torch.optim.AdamW(model.parameters(), lr=p.learning_rate, weight_decay=0.01)
        rng = np.random.default_rng(self.seed)
        epochs = range(p.epochs)
        if progress:
            from tqdm.auto import tqdm

            epochs = tqdm(epochs, desc="char-bert epochs", unit="epoch", leave=False)
        model.train()
        for _ in epochs:
            order = rng.permutation(len(texts))
            for start in range(0, len(order), p.batch_size):
                batch = torch.as_tensor(order[start : start + p.batch_size])
                loss = model(input_ids=ids[batch], attention_mask=mask[batch], labels=labels[batch]).loss
                loss.backward()
                optimiser.step()
                optimiser.zero_grad()
        model.eval()
        return head


class _DictOnly(pickle.Unpickler):
    def find_class(self, module, name):  # the vocabulary is a plain dict: refuse any object
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a vocabulary pickle")


def _tencent_vectors(directory: Path) -> tuple[list[str], np.ndarray] | None:
    vocab_path = directory / "tencent-char-vocab.pkl"
    vectors_path = directory / "tencent-char-embedding-200d.npz"
    if not (vocab_path.is_file() and vectors_path.is_file()):
        return None
    with open(vocab_path, "rb") as fh:
        vocab: dict[str, int] = _DictOnly(fh).load()
    with np.load(vectors_path) as data:
        table = data["embeddings"]
    chars = [c for c in sorted(vocab, key=vocab.get) if c not in ("<UNK>", "<PAD>")]
    return chars, np.stack([table[vocab[c]] for c in chars])


def make_candidate(name: str, *, seed: int = 0, vectors_dir: Path | None = None,
                   bert: BertParams | None = None):
    if name == "tfidf":
        return LinearCandidate(name, use_tfidf=True, embedding_weight=0.0, model="svm", c=1.0, seed=seed)
    if name == "e5-linear":
        return LinearCandidate(name, use_tfidf=False, embedding_weight=1.0, model="logreg", c=100.0, seed=seed)
    if name == "hybrid":
        return LinearCandidate(name, use_tfidf=True, embedding_weight=2.0, model="svm", c=1.0, seed=seed)
    if name == SUBJECT:
        return LinearCandidate(name, use_tfidf=True, embedding_weight=2.0, model="svm", c=1.0, seed=seed,
                               subject_tfidf_weight=1.0, subject_embedding_weight=2.0)
    if name == "char-bert":
        return CharBertCandidate(params_=bert or BertParams(), vectors_dir=vectors_dir, seed=seed)
    from hub.errors import InvalidInput

    raise InvalidInput(f"unknown candidate {name!r}; known: {', '.join((*NAMES, SUBJECT))}",
                       field="candidates")
