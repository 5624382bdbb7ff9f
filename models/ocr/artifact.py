"""The default `read` model: PP-OCRv4 det/rec + the mobile v2 direction classifier, copied out of
the installed `rapidocr-onnxruntime` wheel into a self-contained artifact directory.

>>> meta = prepare_default(shared_dir, Path("/tmp/ppocr-v4"))   # writes *.onnx, ppocr_keys.txt, hub.json
>>> meta["rec_model"], meta["dictionary_size"]
('rec.onnx', '6623')

Another PP-OCR version is registered the same way: put its three ONNX files, its dictionary and a
`hub.json` with the same metadata keys into a directory and register that directory.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from hub.errors import ModelLoadError

FORMAT = "ppocr-onnx"
_WHEEL_FILES = {
    "det_model": ("ch_PP-OCRv4_det_infer.onnx", "det.onnx"),
    "rec_model": ("ch_PP-OCRv4_rec_infer.onnx", "rec.onnx"),
    "cls_model": ("ch_ppocr_mobile_v2.0_cls_infer.onnx", "cls.onnx"),
}


def _wheel_models_dir() -> Path:
    try:
        import rapidocr_onnxruntime
    except ImportError as exc:
        raise ModelLoadError(
            "the default OCR models ship inside rapidocr-onnxruntime==1.4.4; install it "
            "(pip install rapidocr-onnxruntime==1.4.4) or register your own PP-OCR ONNX artifact"
        ) from exc
    return Path(rapidocr_onnxruntime.__file__).resolve().parent / "models"


def prepare_default(shared_dir: Path, out_dir: Path) -> dict[str, str]:
    """Write the PP-OCRv4 artifact into `out_dir` and return its metadata (flat strings).

    `shared_dir` is unused: these weights come from a pip wheel, not from ../shared.
    """
    import onnxruntime as ort

    del shared_dir
    src = _wheel_models_dir()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for wheel_name, local_name in _WHEEL_FILES.values():
        if not (src / wheel_name).is_file():
            raise ModelLoadError(f"{src / wheel_name} is missing from the rapidocr-onnxruntime wheel")
        shutil.copyfile(src / wheel_name, out_dir / local_name)

    # The recognition dictionary travels inside the ONNX metadata ("character", one per line);
    # keep it as a plain file so that load() never depends on where a dictionary comes from.
    rec = ort.InferenceSession(str(out_dir / "rec.onnx"), providers=["CPUExecutionProvider"])
    chars = rec.get_modelmeta().custom_metadata_map["character"].splitlines()
    (out_dir / "ppocr_keys.txt").write_text("\n".join(chars) + "\n", encoding="utf-8")
    n_classes = rec.get_outputs()[0].shape[-1]

    metadata = {
        "engine": "pp-ocr",
        "version": "PP-OCRv4 (det, rec) + ch_ppocr_mobile_v2.0 (cls)",
        "source": "rapidocr-onnxruntime==1.4.4 wheel (Apache-2.0)",
        "det_model": "det.onnx",
        "rec_model": "rec.onnx",
        "cls_model": "cls.onnx",
        "dictionary": "ppocr_keys.txt",
        "dictionary_size": str(len(chars)),
        "ctc_classes": str(n_classes),  # blank + dictionary + space
        "ctc_layout": "blank=0,dictionary,space",
        "color_order": "BGR",
        "det_input_shape": "1,3,H,W (H and W multiples of 32)",
        "det_limit_side_len": "736",
        "det_max_side_len": "2000",
        "det_mean": "0.5,0.5,0.5",
        "det_std": "0.5,0.5,0.5",
        "det_scale": "1/255",
        "det_db_thresh": "0.3",
        "det_db_box_thresh": "0.5",
        "det_db_unclip_ratio": "1.6",
        "cls_input_shape": "3,48,192",
        "cls_labels": "0,180",
        "cls_thresh": "0.9",
        "rec_input_shape": "N,3,48,W",
        "rec_image_height": "48",
        "rec_min_width": "320",
        "rec_width_buckets": ",".join(str(w) for w in (*range(320, 1280, 32), 1280, 1600, 1920, 2560)),
        "rec_batch_px_cpu": str(16 * 640),
        "rec_batch_px_cuda": str(128 * 640),
        "rec_normalisation": "x/255*2-1, zero padding on the right",
        "text_score": "0.5",
    }
    hub_json = {"capability": "read", "format": FORMAT, "metadata": metadata}
    (out_dir / "hub.json").write_text(json.dumps(hub_json, ensure_ascii=False, indent=2), encoding="utf-8")
    return metadata
