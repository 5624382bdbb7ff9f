"""Rewrites of a YOLO-format ONNX detector so that it batches: dequantise, free the batch axis.

The shared YOLOv8n is dynamically quantised (`DynamicQuantizeLinear` + `ConvInteger`, per-tensor
uint8 weights) and exported with a fixed batch of 1. Two pure functions turn it into what the hub
serves:

- `dequantize_conv_integer(model)` replaces each `DynamicQuantizeLinear -> ConvInteger -> Cast ->
  Mul(scale) [-> Add(bias)]` chain by one fp32 `Conv` with weights `(w_q - w_zp) * w_scale`. The
  activation quantisation goes away, which matters for batching: `DynamicQuantizeLinear` picks ONE
  scale for the whole tensor, so an int8 graph's answer for a frame would depend on the other
  frames of its batch.
- `make_batch_dynamic(model)` turns the batch dimension of the input/output into `batch` and the
  head's `Reshape` targets `[1, ...]` into `[0, ...]` (copy the batch size from the input).

`yolo_metadata(model)` reads the Ultralytics export metadata (class names, image size, stride).

>>> m = make_batch_dynamic(dequantize_conv_integer(onnx.load("yolov8n-coco-int8.onnx")))
>>> onnx.save(m, "model.onnx")
"""

from __future__ import annotations

import ast
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from hub.errors import ModelLoadError


def dequantize_conv_integer(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` where every ConvInteger chain is an fp32 Conv (no-op for fp32 graphs)."""
    model = _copy(model)
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def only_consumer(name: str, op_type: str) -> onnx.NodeProto:
        nodes = consumers.get(name, [])
        if len(nodes) != 1 or nodes[0].op_type != op_type:
            raise ModelLoadError(f"unexpected quantised pattern after {name!r}: {[n.op_type for n in nodes]}")
        return nodes[0]

    replace: dict[int, onnx.NodeProto] = {}  # index of the chain's last node -> new Conv
    remove: set[int] = set()
    index = {id(node): i for i, node in enumerate(graph.node)}
    new_inits: list[onnx.TensorProto] = []
    for node in graph.node:
        if node.op_type != "ConvInteger":
            continue
        quantize = producer.get(node.input[0])
        if quantize is None or quantize.op_type != "DynamicQuantizeLinear":
            raise ModelLoadError(f"{node.name}: ConvInteger input is not a DynamicQuantizeLinear output")
        w_name, w_zp_name = node.input[1], node.input[3] if len(node.input) > 3 else ""
        base = w_name.removesuffix("_quantized")
        w_q = numpy_helper.to_array(inits[w_name]).astype(np.float32)
        w_zp = numpy_helper.to_array(inits[w_zp_name]).astype(np.float32) if w_zp_name else np.float32(0)
        w_scale = numpy_helper.to_array(inits[f"{base}_scale"]).astype(np.float32)
        if w_scale.ndim == 1 and w_scale.size > 1:  # per-output-channel quantisation
            w_scale, w_zp = w_scale.reshape(-1, 1, 1, 1), np.reshape(w_zp, (-1, 1, 1, 1))
        weight = ((w_q - w_zp) * w_scale).astype(np.float32)
        new_inits.append(numpy_helper.from_array(weight, f"{base}_dequantized"))

        cast = only_consumer(node.output[0], "Cast")
        scale_mul = only_consumer(cast.output[0], "Mul")
        last, conv_inputs = scale_mul, [quantize.input[0], f"{base}_dequantized"]
        after = consumers.get(scale_mul.output[0], [])
        if len(after) == 1 and after[0].op_type == "Add":
            add = after[0]
            bias_src = next(i for i in add.input if i != scale_mul.output[0])
            bias_reshape = producer.get(bias_src)
            bias_name = bias_reshape.input[0] if bias_reshape is not None and bias_reshape.op_type == "Reshape" else None
            if bias_name in inits and len(inits[bias_name].dims) == 1:
                conv_inputs.append(bias_name)
                last = add
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        conv = helper.make_node("Conv", conv_inputs, [last.output[0]], name=node.name.replace("_quant", ""), **attrs)
        replace[index[id(last)]] = conv
        remove.update(index[id(n)] for n in (node, cast, scale_mul))

    nodes = []
    for i, node in enumerate(graph.node):
        if i in replace:
            nodes.append(replace[i])
        elif i not in remove:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(new_inits)
    _prune(model)
    return model


def make_batch_dynamic(model: onnx.ModelProto, dim_name: str = "batch") -> onnx.ModelProto:
    """A copy of `model` whose first input/output axis is symbolic and whose Reshapes copy it."""
    model = _copy(model)
    graph = model.graph
    for value in list(graph.input) + list(graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].Clear()
            dims[0].dim_param = dim_name
    inits = {i.name: i for i in graph.initializer}
    shared = _consumer_counts(graph)
    for node in graph.node:
        # Only Reshapes of activations carry the batch; a Reshape of a constant (a bias) does not.
        if node.op_type != "Reshape" or node.input[1] not in inits or node.input[0] in inits:
            continue
        shape = numpy_helper.to_array(inits[node.input[1]])
        if shape.ndim == 1 and shape.size >= 2 and shape[0] == 1 and _allowzero(node) == 0:
            if shared[node.input[1]] > 1:  # give this Reshape its own constant before editing it
                new_name = f"{node.input[1]}__{node.name or id(node)}"
                graph.initializer.append(numpy_helper.from_array(shape.copy(), new_name))
                node.input[1] = new_name
                inits[new_name] = graph.initializer[-1]
            fixed = shape.copy()
            fixed[0] = 0  # 0 = copy this dimension from the input (allowzero=0)
            inits[node.input[1]].CopyFrom(numpy_helper.from_array(fixed, node.input[1]))
    del graph.value_info[:]  # stale fixed shapes; inferred again below
    _prune(model)
    return onnx.shape_inference.infer_shapes(model)


def split_yolo_head(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """Cut an Ultralytics Detect head before its decode: the graph then outputs, per stride level,
    the raw box-distribution map `box{i}` [B, 4*reg_max, H, W] and class-logit map `cls{i}`
    [B, nc, H, W], and its input takes any batch and any H, W that are multiples of the stride.

    The decode (anchors, DFL, sigmoid) runs in `models.detection.decode` on the device instead, so
    the same artifact serves square and frame-shaped (rect) inputs. Returns the model and
    `{"reg_max", "nc", "levels"}`.
    """
    model = _copy(model)
    graph = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}

    def reshape_target(node: onnx.NodeProto | None) -> list[int] | None:
        if node is None or node.op_type != "Reshape" or node.input[1] not in inits:
            return None
        return [int(v) for v in inits[node.input[1]].ravel()]

    # The DFL reshape is the one Reshape to [b, 4, reg_max, N]; its input is the box Concat.
    dfl = next((n for n in graph.node if len(reshape_target(n) or []) == 4 and reshape_target(n)[1] == 4), None)
    box_concat = producer.get(dfl.input[0]) if dfl is not None else None
    if box_concat is None or box_concat.op_type != "Concat":
        raise ModelLoadError("could not find the YOLO Detect head (DFL reshape) in the ONNX graph")
    reg_max = reshape_target(dfl)[2]
    box_maps = [producer[i].input[0] for i in box_concat.input]
    cls_concat = None
    for node in graph.node:
        if node.op_type == "Concat" and node is not box_concat and len(node.input) == len(box_maps):
            targets = [reshape_target(producer.get(i)) for i in node.input]
            if all(t is not None and len(t) == 3 and t[1] != 4 * reg_max for t in targets):
                cls_concat = node
                break
    if cls_concat is None:
        raise ModelLoadError("could not find the class branch of the YOLO Detect head")
    cls_maps = [producer[i].input[0] for i in cls_concat.input]
    nc = reshape_target(producer[cls_concat.input[0]])[1]

    del graph.output[:]
    for i, (b, c) in enumerate(zip(box_maps, cls_maps, strict=True)):
        graph.output.append(helper.make_tensor_value_info(f"box{i}", onnx.TensorProto.FLOAT, None))
        graph.output.append(helper.make_tensor_value_info(f"cls{i}", onnx.TensorProto.FLOAT, None))
        graph.node.append(helper.make_node("Identity", [b], [f"box{i}"]))
        graph.node.append(helper.make_node("Identity", [c], [f"cls{i}"]))
    dims = graph.input[0].type.tensor_type.shape.dim
    for axis, name in ((0, "batch"), (2, "height"), (3, "width")):
        dims[axis].Clear()
        dims[axis].dim_param = name
    del graph.value_info[:]
    _prune(model)
    return onnx.shape_inference.infer_shapes(model), {"reg_max": reg_max, "nc": nc, "levels": len(box_maps)}


def yolo_metadata(model: onnx.ModelProto) -> dict[str, Any]:
    """Class names, image size and stride from an Ultralytics export's metadata_props."""
    props = {p.key: p.value for p in model.metadata_props}
    if "names" not in props:
        raise ModelLoadError("ONNX has no 'names' metadata: not an Ultralytics YOLO export")
    names = ast.literal_eval(props["names"])
    imgsz = ast.literal_eval(props.get("imgsz", "[640, 640]"))
    out_dims = [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]
    return {
        "names": [names[i] for i in sorted(names)],
        "imgsz": [int(imgsz[0]), int(imgsz[1])],
        "stride": int(props.get("stride", 32)),
        "task": props.get("task", "detect"),
        "end2end": props.get("end2end", "False") == "True",
        "output_channels": out_dims[1] if len(out_dims) > 1 else None,
    }


def is_quantized(model: onnx.ModelProto) -> bool:
    return any(n.op_type in ("ConvInteger", "DynamicQuantizeLinear", "QLinearConv") for n in model.graph.node)


def _allowzero(node: onnx.NodeProto) -> int:
    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == "allowzero"), 0)


def _consumer_counts(graph: onnx.GraphProto) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            counts[name] = counts.get(name, 0) + 1
    return counts


def _prune(model: onnx.ModelProto) -> None:
    """Drop nodes and initialisers that no graph output depends on."""
    graph = model.graph
    needed = {o.name for o in graph.output}
    kept: list[onnx.NodeProto] = []
    for node in reversed(graph.node):
        if any(out in needed for out in node.output):
            kept.append(node)
            needed.update(i for i in node.input if i)
    kept.reverse()
    del graph.node[:]
    graph.node.extend(kept)
    inits = [i for i in graph.initializer if i.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(inits)


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out
