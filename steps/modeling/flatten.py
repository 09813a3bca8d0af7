"""A model with models inside (the transfer-learning shape `Sequential([MobileNetV2(include_top=False), ...])`)
rebuilt as one flat functional model over the same layers.

TFMOT wraps layers: it leaves a nested model unpruned and unclustered without a word, and its quantization
refuses one. Replaying each inner graph on the outer model's tensors gives the same function with every layer
in view. Subclassed inner models have no graph to replay: they stay nested, and QAT says so.
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras as keras


def nested_models(model: keras.Model) -> list[keras.Model]:
    return [layer for layer in model.layers if isinstance(layer, keras.Model)]


def flattened(model: keras.Model) -> keras.Model:
    """`model` itself when nothing in it is nested (or it cannot be replayed); else a flat functional copy
    sharing its layers and weights. An inner layer whose name the outer model already uses is renamed
    `<inner model>_<layer>`, since a Keras model's layer names are unique."""
    if not nested_models(model) or not _is_graph(model) or not all(_is_graph(m) for m in nested_models(model)):
        return model
    _rename_clashes(model)
    inputs = [keras.Input(tensor.shape[1:], dtype=tensor.dtype) for tensor in model.inputs]
    return keras.Model(inputs if len(inputs) > 1 else inputs[0], _replay(model, inputs), name=model.name)


def _is_graph(model: keras.Model) -> bool:
    return bool(getattr(model, "_is_graph_network", False))


def _replay(model: keras.Model, inputs: list) -> list:
    """Call `model`'s layers in its graph's order (tf_keras's own traversal) on `inputs`; returns its outputs.
    An inner model is replayed in turn, dropping the arguments it was called with (training=False: the
    BatchNorm rule of steps/modeling/training.py decides that now)."""
    computed = {str(id(graph_input)): given for graph_input, given in zip(model.inputs, inputs)}
    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            if node.is_input:
                continue
            if isinstance(node.layer, keras.Model):
                results = _replay(node.layer, [computed[str(id(t))] for t in node.keras_inputs])
            else:
                arguments = {}  # map_arguments pops one value per use of a tensor
                for tensor_id, _ in node._keras_inputs_ids_and_indices:
                    arguments.setdefault(tensor_id, []).append(computed[tensor_id])
                args, kwargs = node.map_arguments(arguments)
                results = node.layer(*args, **kwargs)
            for graph_output, result in zip(tf.nest.flatten(node.outputs), tf.nest.flatten(results)):
                computed[str(id(graph_output))] = result
    outputs = [computed[str(id(tensor))] for tensor in model.outputs]
    return outputs if len(outputs) > 1 else outputs[0]


def _rename_clashes(model: keras.Model) -> None:
    seen = {layer.name for layer in model.layers if not isinstance(layer, keras.Model)}
    for inner in nested_models(model):
        for layer in inner.layers:
            if isinstance(layer, keras.layers.InputLayer):
                continue
            if layer.name in seen:
                layer._name = f"{inner.name}_{layer.name}"  # tf_keras keeps the name here
            seen.add(layer.name)
