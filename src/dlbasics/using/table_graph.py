"""A table's encoding as ONNX operators, in front of an exported net: raw rows in.

A run on a table with text columns learned one-hot categories (:mod:`dlbasics.data.encoding`).
Its ONNX export reads the rows as they are, in two inputs:

- ``numbers``: float32 ``(batch, n_numbers)``, the number columns in the run's order
  (NaN where a cell is missing; the run's fill value replaces it when it imputed them);
- ``categories``: string ``(batch, n_categories)``, the text columns in the run's order
  (an empty string where a cell is missing).

The graph encodes them as training did, with the ai.onnx.ml operators onnxruntime runs:
``LabelEncoder`` maps rare levels to ``(other)`` and an empty cell to the fill level,
``OneHotEncoder`` gives one column per level (all zeros for an unseen level with
``data.unknown_category=ignore``; an error otherwise), and ``Concat`` restores the
column order the net was trained on. ``onnx.compose.merge_models`` joins this graph to
the net's.
"""

from __future__ import annotations

from dlbasics.data.encoding import OTHER, TableEncoding

ML_OPSET = 3  # ai.onnx.ml: LabelEncoder with string values (2+), OneHotEncoder (1)
NUMBERS, CATEGORIES = "numbers", "categories"
UNSEEN = "\x00unseen"  # LabelEncoder's default: no level of any column is this


def with_encoding(net, encoding: TableEncoding, net_input: str):
    """The ONNX model ``net`` (reading the encoded float32 matrix at ``net_input``) behind
    ``encoding``'s operators: a model reading raw ``numbers`` and ``categories``."""
    from onnx import TensorProto, compose, helper

    numbers = [c.name for c in encoding.numbers]
    texts = [c.name for c in encoding.categories]
    nodes, initializers, blocks = [], [], []

    def constant(name: str, values: list[int]):
        initializers.append(helper.make_tensor(name, TensorProto.INT64, [len(values)], values))
        return name

    for position, column in enumerate(encoding.columns):
        tag = f"encode_{position}"
        if column.kind == "number":
            index = constant(f"{tag}_index", [numbers.index(column.name)])
            nodes.append(helper.make_node("Gather", [NUMBERS, index], [tag], axis=1))
            blocks.append(tag)
            continue
        index = constant(f"{tag}_index", [texts.index(column.name)])
        nodes.append(helper.make_node("Gather", [CATEGORIES, index], [f"{tag}_text"], axis=1))
        mapping = {level: level for level in column.levels if level != OTHER}
        mapping.update(dict.fromkeys(column.rare, OTHER))
        if column.fill is not None:
            mapping[""] = column.fill
        nodes.append(
            helper.make_node(
                "LabelEncoder", [f"{tag}_text"], [f"{tag}_level"], domain="ai.onnx.ml",
                keys_strings=list(mapping), values_strings=list(mapping.values()),
                default_string=UNSEEN,
            )
        )  # fmt: skip
        nodes.append(
            helper.make_node(
                "OneHotEncoder", [f"{tag}_level"], [f"{tag}_hot"], domain="ai.onnx.ml",
                cats_strings=list(column.levels), zeros=int(encoding.unknown == "ignore"),
            )
        )  # fmt: skip
        shape = constant(f"{tag}_shape", [-1, len(column.levels)])
        nodes.append(helper.make_node("Reshape", [f"{tag}_hot", shape], [tag]))
        blocks.append(tag)
    nodes.append(helper.make_node("Concat", blocks, ["encoded"], axis=1))

    inputs = []
    if numbers:
        inputs.append(
            helper.make_tensor_value_info(NUMBERS, TensorProto.FLOAT, ["batch", len(numbers)])
        )
    inputs.append(
        helper.make_tensor_value_info(CATEGORIES, TensorProto.STRING, ["batch", len(texts)])
    )
    width = len(encoding.feature_names)
    output = helper.make_tensor_value_info("encoded", TensorProto.FLOAT, ["batch", width])
    graph = helper.make_graph(nodes, "table_encoding", inputs, [output], initializers)
    opset = next(o.version for o in net.opset_import if o.domain in ("", "ai.onnx"))
    front = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid("ai.onnx.ml", ML_OPSET)],
        ir_version=net.ir_version,
    )
    return compose.merge_models(front, net, io_map=[("encoded", net_input)])


def table_inputs(frame, encoding: TableEncoding) -> dict:
    """A DataFrame of the run's columns -> the two inputs of :func:`with_encoding`'s graph."""
    import numpy as np

    feeds = {}
    numbers = [c.name for c in encoding.numbers]
    if numbers:
        feeds[NUMBERS] = frame[numbers].to_numpy(dtype=np.float32)
    from dlbasics.data.encoding import as_text

    texts = [as_text(frame[c.name]).fillna("").to_numpy(dtype=object) for c in encoding.categories]
    feeds[CATEGORIES] = np.stack(texts, axis=1).astype(object) if texts else None
    return feeds
