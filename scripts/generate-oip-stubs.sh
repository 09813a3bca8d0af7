#!/usr/bin/env bash
# Regenerates the Open Inference Protocol's Python stubs (steps/serve/oip/*_pb2*.py) from the .proto beside them.
# grpcio-tools 1.74 carries protoc 6.31.1: the generated code then runs on every protobuf from 6.31.1 on, which
# is also tensorflow 2.21's floor, so one set of stubs serves the full and the serving-only installs.
set -euo pipefail
cd "$(dirname "$0")/.."
tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT
python3 -m venv "$tools"
"$tools/bin/pip" install --quiet grpcio-tools==1.74.0
# Run from the repository root so the stubs import each other as steps.serve.oip.*.
"$tools/bin/python" -m grpc_tools.protoc -I. --python_out=. --grpc_python_out=. steps/serve/oip/grpc_predict_v2.proto
