"""The MLflow edges: logging a step's run, how runs relate, the registry and its aliases, the gate, promotion,
whether a version serves, and running entry points as child runs.
"""
