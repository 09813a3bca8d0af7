"""Keras models (architectures, training, conversion, I/O) and LiteRT deployables (runtime, pyfunc, measurement).
Empty on purpose: the server imports litert_runtime alone, never TensorFlow.
"""
