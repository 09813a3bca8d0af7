"""Compression: TFMOT pruning, clustering and QAT, each layer's sensitivity, variants derived from a parent, and
the recipes that make a variant again.
"""
