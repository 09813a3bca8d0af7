"""Data sets in (digits, .npz, image folders, run artifacts), one image decoding, and the corruptions drift and
robustness are made of. numpy, scipy and Pillow: no TensorFlow.
"""
