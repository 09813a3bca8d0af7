"""Updating a champion from new data: where it came from, labelled traffic, the mixed update data, the update's
gate.
"""
