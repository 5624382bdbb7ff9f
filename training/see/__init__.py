"""`see` training: fine-tune a registered YOLO detector on a YOLO-format dataset, score it the way
serving runs it, register it, and gate `champion` on mAP50-95 (`hub train see`, `hub eval see`).

Modules: `data` (dataset YAML), `finetune` (Ultralytics run + export to the hub artifact),
`evaluate` (mAP of an artifact), `report` (prediction grid, model card), `pipeline` (MLflow + gate).
"""
