"""The Open Inference Protocol (KServe v2): what Triton, KServe and MLServer speak, on the server's data plane.

`tensors` holds the protocol without a transport (model metadata, input
tensors to a batch, outputs to tensors); `rest` is its HTTP face on the
server's port, `grpc_service` its gRPC face on `grpc_port`. The stubs
`grpc_predict_v2_pb2*.py` are generated from the published .proto beside
them by scripts/generate-oip-stubs.sh.
"""
