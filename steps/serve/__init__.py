"""The real-time server: LiteRT deployables behind HTTP, following a registry alias.

Layers (one module each): `app` (HTTP only: routes, request ids, errors to
JSON; `reading` reads requests), `dataplane` (the one place a prediction is made, timed and logged, for
every protocol), `protocol` (scoring formats, framework-free), `runtime`
(load/warm/predict a registered LiteRT model; `fetch` is its child process),
`batching` (optional dynamic batching), `reload` (alias following; `registry`
polls without mlflow), `metrics` (Prometheus), `predlog` (the durable
prediction log), `errors` (typed client errors with their HTTP status),
`server` (the parts wired, start and stop), `cli` (the entry point and its
settings). Nothing here imports tensorflow: a server starts in well under a
second and stays small.
"""
