"""What a .tflite graph is made of, for tests that check how a deployable was converted."""

from __future__ import annotations

import numpy as np
from ai_edge_litert.interpreter import Interpreter

CONVERSIONS = {"QUANTIZE", "DEQUANTIZE"}  # float <-> int8 at the edges, and after QAT once more at the input


def float_ops(tflite: bytes) -> list[str]:
    """The ops that compute in float32 (read or write a float32 tensor), conversions aside: none in a fully
    integer model. After QAT the converter leaves the input's fake-quant as QUANTIZE, DEQUANTIZE, QUANTIZE (a
    requantization through float, no arithmetic), hence ops, not tensors."""
    interpreter = Interpreter(model_content=tflite)
    dtypes = {detail["index"]: detail["dtype"] for detail in interpreter.get_tensor_details()}
    return [
        op["op_name"]
        for op in interpreter._get_ops_details()  # LiteRT's only listing of the graph's ops
        if op["op_name"] not in CONVERSIONS
        and any(dtypes.get(index) == np.float32 for index in [*op["inputs"], *op["outputs"]] if index >= 0)
    ]
