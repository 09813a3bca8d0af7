"""Served traffic read back and judged: the prediction logs, drift tests and reference profiles, their measured
rates.
"""
