"""Figures and the monitor's HTML page (matplotlib)."""
