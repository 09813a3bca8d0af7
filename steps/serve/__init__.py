"""The real-time server: LiteRT deployables behind HTTP, following a registry alias.

Layers (one module each): `app` (HTTP only), `protocol` (scoring formats and
images, framework-free), `runtime` (load/warm/predict a registered LiteRT
model), `batching` (optional dynamic batching), `reload` (alias following),
`metrics` (Prometheus), `predlog` (the durable prediction log), `errors`
(typed client errors with their HTTP status). Nothing here imports
tensorflow: a server starts in well under a second and stays small.
"""
