"""One module per capability: its wire schema and its class (`models.catalogue` lists them).

Capabilities are verbs on the wire and nouns here (the README's Layout has the same table):
see -> `models.detection`, read -> `models.ocr`, listen -> `models.asr`, speak -> `models.tts`,
reason -> `models.textcls`. Column names are one set end to end: `xyxy`, `score`, `class_name`.
"""
