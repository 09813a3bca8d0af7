"""Pure building blocks every layer may use: the compression plan, the choice within the budget, statistics,
timing, the prediction log's on-disk format, SQLite files opened read-only.
"""
