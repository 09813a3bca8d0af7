"""The public names of DESIGN.md, defined once: tags, metric keys, artifact names, aliases.

Steps, tests and the MLflow UI comparisons all depend on these strings; no
other module spells them out.
"""

# Run tags
TAG_STEP = "rtdeploy.step"
TAG_VARIANT = "rtdeploy.variant"
TAG_PARENT_MODEL = "rtdeploy.parent_model"
TAG_DATASET_DIGEST = "rtdeploy.dataset_digest"
TAG_BASELINE_RUN = "rtdeploy.baseline_run"  # the train run whose float32 deployable this variant is compared with
TAG_BASELINE_ACCURACY = "rtdeploy.baseline_accuracy"  # that deployable's accuracy, so children need not look it up
TAG_BASELINE_GZIP_BYTES = "rtdeploy.baseline_gzip_bytes"
TAG_RECIPE = "rtdeploy.recipe"  # JSON list of the compression steps (with settings) that made this variant
# Tags and metrics of the pipeline (main) run
TAG_STEP_RUN = "rtdeploy.run.{step}"  # which child run did each step of the plan
TAG_BEST_VARIANT = "rtdeploy.best_variant"  # smallest variant within the accuracy budget
BEST_COMPRESSION_RATIO = "best_compression_ratio"  # that variant's compression_ratio

# Metrics every variant run logs, so the MLflow UI compares them side by side
ACCURACY = "accuracy"  # top-1 of the deployable on the test split
ACCURACY_DROP = "accuracy_drop"  # float baseline accuracy minus this one's
SIZE_BYTES = "size_bytes"
SIZE_GZIP_BYTES = "size_gzip_bytes"
COMPRESSION_RATIO = "compression_ratio"  # float32 .tflite gzip size / this gzip size
SPARSITY = "sparsity"  # fraction of zero weights in kernels
LATENCY_P50_MS = "latency_p50_ms"  # single-sample LiteRT latency, after warm-up
LATENCY_P95_MS = "latency_p95_ms"
LATENCY_P99_MS = "latency_p99_ms"
PARAMS = "params"
VARIANT_METRICS = (
    ACCURACY,
    ACCURACY_DROP,
    SIZE_BYTES,
    SIZE_GZIP_BYTES,
    COMPRESSION_RATIO,
    SPARSITY,
    LATENCY_P50_MS,
    LATENCY_P95_MS,
    LATENCY_P99_MS,
    PARAMS,
)
# Extra metrics of the train step
KERAS_ACCURACY = "keras_accuracy"  # the float Keras model itself on the test split
AGREEMENT = "agreement_with_parent"  # share of test samples where deployable and Keras model agree
EPOCHS_TRAINED = "epochs_trained"
# Per-epoch curves: Keras history key -> MLflow metric key (stepped by epoch).
# Prefixed so they never collide with the final `accuracy` of the test split.
EPOCH_METRICS = {
    "loss": "epoch_loss",
    "accuracy": "epoch_accuracy",
    "val_loss": "epoch_val_loss",
    "val_accuracy": "epoch_val_accuracy",
}

# Names of the models logged in a run (URIs: runs:/<run_id>/<name>)
KERAS_MODEL = "keras_model"  # float or compressed tf_keras model: a parent for later steps
LITERT_MODEL = "litert_model"  # the .tflite deployable as a LiteRT pyfunc model
CLASS_NAMES = "class_names"  # key of the class names in a deployable's MLmodel metadata (the server answers labels)

# Tags of a registered model version: what it is, where it came from, and the gate's verdict
VERSION_TAG_VARIANT = "variant"
VERSION_TAG_ACCURACY = "accuracy"
VERSION_TAG_SIZE_GZIP_BYTES = "size_gzip_bytes"
VERSION_TAG_SOURCE_RUN = "source_run_id"
VERSION_TAG_DATASET_DIGEST = "dataset_digest"
VERSION_TAG_PARENT_MODEL = "parent_model"
VERSION_TAG_BASELINE_RUN = "baseline_run_id"
VERSION_TAG_RECIPE = "recipe"
VERSION_TAG_VALIDATION_STATUS = "validation_status"  # passed / failed / forced
VERSION_TAG_VALIDATION_REASON = "validation_reason"
VALIDATION_PASSED = "passed"
VALIDATION_FAILED = "failed"
VALIDATION_FORCED = "forced"

# Tags of register/promote/rollback runs: which version they acted on
TAG_MODEL_NAME = "rtdeploy.model_name"
TAG_MODEL_VERSION = "rtdeploy.model_version"
TAG_FORCED = "rtdeploy.forced"

# Registry aliases
CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS = "previous"

# Variant name of the uncompressed deployable
FLOAT32_VARIANT = "float32"
