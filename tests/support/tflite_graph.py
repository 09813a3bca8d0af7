"""What a .tflite graph is made of, for tests that check how a deployable was converted."""

from __future__ import annotations

import numpy as np
from ai_edge_litert.interpreter import Interpreter


def float_tensors_inside(tflite: bytes) -> list[str]:
    """The float32 tensors between the graph's input and output: none in a fully integer model, whose edges
    alone may be float (its QUANTIZE and DEQUANTIZE ops)."""
    interpreter = Interpreter(model_content=tflite)
    edges = {detail["index"] for detail in interpreter.get_input_details() + interpreter.get_output_details()}
    return [
        detail["name"]
        for detail in interpreter.get_tensor_details()
        if detail["dtype"] == np.float32 and detail["index"] not in edges
    ]
