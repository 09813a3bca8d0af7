"""The public names of DESIGN.md, defined once: steps, tags, metric keys, artifact names, aliases, parameter values.

Steps, tests and the MLflow UI comparisons all depend on these strings; no
other module spells them out. Pure: imports nothing, so any module may use it.
"""

# Steps: MLproject entry points, the `rtdeploy.step` tag and the names of runs
TRAIN = "train"
PRUNE = "prune"
CLUSTER = "cluster"
QUANTIZE = "quantize"
EVALUATE = "evaluate"
REGISTER = "register"
PROMOTE = "promote"
ROLLBACK = "rollback"
MAIN = "main"  # the pipeline
MONITOR = "monitor"
SIMULATE = "simulate"
UPDATE = "update"
AUTOPILOT = "autopilot"
SEARCH = "search"
SERVE = "serve"  # the server's entry point (and the `rtdeploy-serve` script): its one-line errors start `serve:`
SEARCH_TRIAL = "trial"  # the step tag of each of a search's trials (nested runs of the search run)
GATE = "gate"  # update's last stage: register, compare on old and new data, check it serves, promote
COMPRESSION_STEPS = (PRUNE, CLUSTER, QUANTIZE)  # steps that derive a variant from a parent Keras model

# Exit codes of every entry point (`python -m steps.<stage>`; `mlflow run` turns any non-zero one into 1)
EXIT_OK = 0  # done (also: nothing to do, e.g. monitor with too little traffic to judge)
EXIT_FAILURE = 1  # the step could not do its work: a child step failed, the store is unreachable, a bug
EXIT_USAGE = 2  # a user's mistake: a bad value, unknown id or URI, missing or unwritable path, corrupt file
EXIT_REFUSED = 3  # the gate refused the candidate: nothing went wrong, and the champion is unchanged

# Experiments: runs land here unless the user names another one (mlflow run --experiment-name)
EXPERIMENT = "rtdeploy"
MONITORING_EXPERIMENT = "monitoring"
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"  # MLflow 3's UI opens a model-training experiment on its runs table
EXPERIMENT_KIND = "custom_model_development"  # (not the GenAI overview, which it guesses for an untagged one)

DEFAULT_MODEL_NAME = "digits-classifier"  # the registered model, unless model_name says otherwise

# Parameter values (the CLI refuses others, listing these)
ARCHITECTURES = ("cnn", "dscnn", "mlp", "mobilenetv2", "mobilenetv3small")
MOBILENETS = ("mobilenetv2", "mobilenetv3small")  # tf_keras applications: inputs of at least MOBILENET_MIN_SIDE px
MOBILENET_MIN_SIDE = 32  # their five stride-2 stages leave a 1x1 map at 32 px
# How BatchNorm layers train: auto (a layer at its initial statistics learns them with momentum 0.9, one with
# learned statistics stays in inference mode), train (every one learns), frozen (every one in inference mode)
BATCHNORM_MODES = ("auto", "train", "frozen")
OPTIMIZERS = ("sgd", "momentum", "rmsprop", "adam")
PRUNE_STRUCTURES = ("unstructured", "2:4")
# none: float32; dynamic: int8 weights, float activations; float16: half-precision weights;
# int8: integer-only with int8 input and output, calibrated on a representative sample.
CONVERSION_MODES = ("none", "dynamic", "float16", "int8")
QUANTIZE_MODES = (*CONVERSION_MODES, "qat")  # qat: quantization-aware fine-tuning, then int8
# How much of the corruption suite each deployable is measured under: full (5 levels per kind), fast (the
# default level only), off
ROBUSTNESS_MODES = ("off", "fast", "full")
AUGMENTATIONS = ("none", "standard")  # train's augment: standard = random translation, rotation, zoom, contrast, noise

# Run tags
TAG_STEP = "rtdeploy.step"
TAG_VARIANT = "rtdeploy.variant"
TAG_PARENT_MODEL = "rtdeploy.parent_model"
TAG_DATASET_DIGEST = "rtdeploy.dataset_digest"
TAG_BASELINE_RUN = "rtdeploy.baseline_run"  # the train run whose float32 deployable this variant is compared with
TAG_BASELINE_ACCURACY = "rtdeploy.baseline_accuracy"  # that deployable's test accuracy, so children need not look it up
TAG_BASELINE_VAL_ACCURACY = "rtdeploy.baseline_val_accuracy"  # and its validation accuracy (selection uses it)
TAG_BASELINE_GZIP_BYTES = "rtdeploy.baseline_gzip_bytes"
TAG_BASELINE_ROBUSTNESS = "rtdeploy.baseline_robustness"  # its robustness mode, test and validation robust accuracy
TAG_BASELINE_ROBUST_ACCURACY = "rtdeploy.baseline_robust_accuracy"
TAG_BASELINE_VAL_ROBUST_ACCURACY = "rtdeploy.baseline_val_robust_accuracy"
# A step's own exit code when it was a mistake (2) or a refusal (3), on the run `mlflow run` made for it: `mlflow
# run` itself exits 1 for any failure, so a parent step reads the child's code here
TAG_EXIT_CODE = "rtdeploy.exit_code"
TAG_RECIPE = "rtdeploy.recipe"  # JSON list of the compression steps (with settings) that made this variant
# Tags and metrics of the pipeline (main) run
TAG_STEP_RUN = "rtdeploy.run.{step}"  # which child run did each step of the plan
TAG_BEST_VARIANT = "rtdeploy.best_variant"  # smallest variant within the accuracy budget (on validation data)
BEST_COMPRESSION_RATIO = "best_compression_ratio"  # that variant's compression_ratio
# Compression search (`search`): the parent run's choice among its study's trials, and each trial's place
TAG_BEST_RUN = "rtdeploy.best_run"  # the chosen trial's run (smallest within the budget on validation)
TAG_STUDY = "rtdeploy.study"  # the Optuna study a trial belongs to
TAG_TRIAL = "rtdeploy.trial"  # its number in that study (unique across every process that joined it)
TAG_TRIAL_STATE = "rtdeploy.trial_state"  # complete, or pruned (hopeless after pruning: not clustered or quantized)


def interval_keys(metric: str) -> tuple[str, str]:
    """The metric names of an accuracy's 95% Wilson interval: `accuracy` has `accuracy_low`, `accuracy_high`."""
    return f"{metric}_low", f"{metric}_high"


# Metrics every variant run logs, so the MLflow UI compares them side by side
ACCURACY = "accuracy"  # top-1 of the deployable on the test split (reported, never used to choose)
ACCURACY_LOW, ACCURACY_HIGH = interval_keys(ACCURACY)  # its 95% Wilson interval
ACCURACY_DROP = "accuracy_drop"  # float baseline test accuracy minus this one's
VAL_ACCURACY = "val_accuracy"  # top-1 on the validation split: what variants are chosen by
VAL_ACCURACY_DROP = "val_accuracy_drop"  # float baseline validation accuracy minus this one's
SIZE_BYTES = "size_bytes"
SIZE_GZIP_BYTES = "size_gzip_bytes"  # the headline size: gzip -9, as a compressed download costs
SIZE_XZ_BYTES = "size_xz_bytes"  # xz -9e (LZMA): what a package or an over-the-air update costs
COMPRESSION_RATIO = "compression_ratio"  # float32 .tflite gzip size / this gzip size
SPARSITY = "sparsity"  # fraction of zero weights in kernels
LATENCY_P50_MS = "latency_p50_ms"  # single-sample LiteRT latency, after warm-up
LATENCY_P95_MS = "latency_p95_ms"
LATENCY_P99_MS = "latency_p99_ms"
PARAMS = "params"


def latency_p50_ms_threads(threads: int) -> str:
    """evaluate's p50 with LiteRT on `threads` threads (the latency_p* metrics are one-thread by definition)."""
    return f"{LATENCY_P50_MS}_threads{threads}"


VARIANT_METRICS = (
    ACCURACY,
    ACCURACY_LOW,
    ACCURACY_HIGH,
    ACCURACY_DROP,
    VAL_ACCURACY,
    VAL_ACCURACY_DROP,
    SIZE_BYTES,
    SIZE_GZIP_BYTES,
    SIZE_XZ_BYTES,
    COMPRESSION_RATIO,
    SPARSITY,
    LATENCY_P50_MS,
    LATENCY_P95_MS,
    LATENCY_P99_MS,
    PARAMS,
)
# Robustness (steps/modeling/robustness.py), logged when the run's robustness mode is not off: accuracy under the
# corruption suite, the mean over kinds and levels, and per kind the mean over its levels (test split)
ROBUST_ACCURACY = "robust_accuracy"
VAL_ROBUST_ACCURACY = "val_robust_accuracy"  # on the validation split: what selection uses
ROBUST_ACCURACY_DROP = "robust_accuracy_drop"  # float baseline's robust accuracy minus this one's (equal modes only)
VAL_ROBUST_ACCURACY_DROP = "val_robust_accuracy_drop"
ROBUSTNESS_FILE = "robustness.json"  # every kind and level, test and validation
# What compression forgot (steps/compress/forgetting.py), against the float baseline's deployable
FLIP_RATE = "flip_rate"  # share of test samples whose predicted class differs from the baseline's
TEST_PREDICTIONS_FILE = "test_predictions.json"  # every deployable's predicted class per test sample
FORGETTING_TABLE = "forgetting_per_class.json"  # per class: baseline accuracy, this one's, the change
FLIPPED_FIGURE = "flipped.png"  # the test images whose class changed


def robust_accuracy_of(kind: str) -> str:
    return f"{ROBUST_ACCURACY}_{kind}"


# What "best" minimises among variants within the accuracy budget: objective -> metric (lower wins)
OBJECTIVES = {"size": SIZE_GZIP_BYTES, "latency": LATENCY_P50_MS}
# Extra metrics of the train step
KERAS_ACCURACY = "keras_accuracy"  # the float Keras model itself on the test split
AGREEMENT = "agreement_with_parent"  # share of test samples where deployable and Keras model agree
EPOCHS_TRAINED = "epochs_trained"
PEAK_RSS_MB = "peak_rss_mb"  # the train process's most resident memory: what a machine must hold for this data
LEARNING_RATE_USED = "learning_rate_used"  # train param: the rate learning_rate=auto chose (or the one given)
# Per-epoch curves: Keras history key -> MLflow metric key (stepped by epoch).
# Prefixed so they never collide with the final `accuracy` of the test split.
EPOCH_METRICS = {
    "loss": "epoch_loss",
    "accuracy": "epoch_accuracy",
    "val_loss": "epoch_val_loss",
    "val_accuracy": "epoch_val_accuracy",
}
# Metrics of the evaluate step (beside accuracy, its interval and the latency percentiles)
MACRO_F1 = "macro_f1"
ERROR_RATE = "error_rate"
THROUGHPUT = "throughput_batch32_per_s"
PEAK_RSS_MB = "peak_rss_mb"
LOAD_SECONDS = "load_seconds"
# Metrics of a gate verdict (register, promote runs)
CHALLENGER_ACCURACY = "challenger_accuracy"
CHAMPION_ACCURACY = "champion_accuracy"
ACCURACY_CHANGE = "accuracy_change_vs_champion"  # challenger minus champion, on the same test samples
MCNEMAR_P_VALUE = "mcnemar_p_value"  # exact McNemar test of that difference (paired, same samples)
# The same under the corruption suite (the challenger run's robustness mode; none when it was off)
CHALLENGER_ROBUST_ACCURACY = "challenger_robust_accuracy"
CHAMPION_ROBUST_ACCURACY = "champion_robust_accuracy"
ROBUST_ACCURACY_CHANGE = "robust_accuracy_change_vs_champion"


# How hard the server's log holds an answered prediction (`serve -P log_sync`): SQLite's synchronous level
LOG_SYNC_NORMAL = "normal"  # WAL, synchronous=NORMAL: survives a crash or kill -9 of the server, not a power loss
LOG_SYNC_FULL = "full"  # WAL, synchronous=FULL: an fsync per commit group, survives a power loss too
LOG_SYNC_MODES = (LOG_SYNC_NORMAL, LOG_SYNC_FULL)
DEFAULT_PREDICTION_LOG = "predictions.db"  # where serve writes its log, and where monitor, update, autopilot look
# With `serve -P workers=N`, worker i writes its own log beside the named one: predictions.db -> predictions.worker1.db
WORKER_LOG_INFIX = ".worker"


def worker_log_path(path: str, index: int | str) -> str:
    """Worker `index`'s prediction log for the log named `path` ("*" gives the glob of all of them)."""
    folder, slash, name = path.rpartition("/")
    stem, dot, suffix = name.rpartition(".")
    if not stem:  # no suffix (or a dotfile): the infix goes at the end
        stem, dot, suffix = name, "", ""
    return f"{folder}{slash}{stem}{WORKER_LOG_INFIX}{index}{dot}{suffix}"


# Monitoring: what `monitor` logs per window (one metric step per window) and how it alerts
TAG_ALERT = "rtdeploy.alert"  # ALERT_NONE or the comma-separated reasons
ALERT_NONE = "none"
ALERT_LATENCY, ALERT_ACCURACY, ALERT_DRIFT, ALERT_ERRORS = "latency", "accuracy", "drift", "errors"
ALERT_INCOMPLETE = "monitoring_incomplete"  # a check that should have run could not (e.g. no reference profile)
ALERT_REASONS = (ALERT_LATENCY, ALERT_ACCURACY, ALERT_DRIFT, ALERT_ERRORS, ALERT_INCOMPLETE)
ALERTS_UPDATE_ANSWERS = (ALERT_DRIFT, ALERT_ACCURACY)  # new data fixes these; latency and errors need another fix
JUDGED_WINDOWS = "judged_windows"  # windows with enough samples to judge (0: too little traffic, nothing judged)
REQUESTS = "requests"
THROUGHPUT_RPS = "throughput_rps"
INFERENCE_P50_MS = "inference_p50_ms"  # the model invocation alone (latency_p*_ms: body received to answer)
INFERENCE_P95_MS = "inference_p95_ms"
INFERENCE_P99_MS = "inference_p99_ms"
RSS_MB = "rss_mb"  # the server's resident memory, from its heartbeats
MODEL_SIZE_BYTES = "model_size_bytes"
BAD_REQUEST_RATE = "bad_request_rate"  # refused 4xx / all requests
SERVER_ERROR_RATE = "server_error_rate"  # 5xx / all requests
LABELLED = "labelled"  # predictions with feedback in the window
LIVE_ACCURACY = "live_accuracy"  # on those, with its 95% Wilson interval
LIVE_ACCURACY_LOW = "live_accuracy_low"
LIVE_ACCURACY_HIGH = "live_accuracy_high"
# Drift of a window against the reference profile: p-values (low = drifted)
DRIFT_P_CLASSES = "drift_p_predicted_classes"  # predicted-class distribution
DRIFT_P_SOFTMAX = "drift_p_softmax"  # per-class softmax outputs, Bonferroni over classes
DRIFT_P_PIXELS = "drift_p_pixels"  # multivariate test on downsampled pixels
DRIFT_STATISTICS = (DRIFT_P_CLASSES, DRIFT_P_SOFTMAX, DRIFT_P_PIXELS)
REFERENCE = "reference"  # artifact folder of a deployable's run: its reference profile, made on validation data
# Kinds of drift `simulate` can put into its traffic, and what it logs
DRIFTS = ("none", "noise", "shift", "rotate", "invert", "dim", "label", "scale", "blur", "contrast", "jpeg")
# The corruptions every variant's robustness is measured under (a subset of DRIFTS: each changes the image only)
ROBUSTNESS_KINDS = ("shift", "rotate", "noise", "dim", "scale", "blur", "contrast", "jpeg")
SENT = "sent"
ANSWERED = "answered"
FEEDBACK_SENT = "feedback_sent"

# Names of the models logged in a run (URIs: runs:/<run_id>/<name>)
KERAS_MODEL = "keras_model"  # float or compressed tf_keras model: a parent for later steps
LITERT_MODEL = "litert_model"  # the .tflite deployable as a LiteRT pyfunc model
CLASS_NAMES = "class_names"  # key of the class names in a deployable's MLmodel metadata (the server answers labels)
# Artifacts
VARIANTS_TABLE = "variants.json"  # main: one row per variant
VARIANTS_FIGURE = "variants.png"  # main: accuracy vs cost, Pareto front
EVALUATION_FOLDER = "evaluation"  # evaluate: the report's tables and figures

# Tags of a registered model version: what it is, where it came from, and the gate's verdict
VERSION_TAG_VARIANT = "variant"
VERSION_TAG_ACCURACY = "accuracy"
VERSION_TAG_ROBUST_ACCURACY = ROBUST_ACCURACY  # when the variant's run measured it
VERSION_TAG_FLIP_RATE = FLIP_RATE
VERSION_TAG_SIZE_GZIP_BYTES = "size_gzip_bytes"
VERSION_TAG_SOURCE_RUN = "source_run_id"
VERSION_TAG_DATASET_DIGEST = "dataset_digest"
VERSION_TAG_PARENT_MODEL = "parent_model"
VERSION_TAG_BASELINE_RUN = "baseline_run_id"
VERSION_TAG_RECIPE = "recipe"
VERSION_TAG_VALIDATION_STATUS = "validation_status"  # one of VALIDATION_STATUSES
VERSION_TAG_VALIDATION_REASON = "validation_reason"
VERSION_TAG_MCNEMAR_P_VALUE = MCNEMAR_P_VALUE
VALIDATION_PASSED = "passed"  # the gate ran and the version may serve
VALIDATION_FAILED = "failed"  # the gate ran and refused it
VALIDATION_FORCED = "forced"  # promoted around the gate (promote force=true)
VALIDATION_UNCHANGED = "unchanged"  # already the champion: nothing to decide
VALIDATION_STATUSES = (VALIDATION_PASSED, VALIDATION_FAILED, VALIDATION_FORCED, VALIDATION_UNCHANGED)
VERSION_TAG_PROMOTED_AT = "promoted_at"  # unix seconds it became champion: update's feedback starts there
VERSION_TAG_PARENT_VERSION = "parent_version"  # the champion an update started from
VERSION_TAG_DATA_SOURCE = "data_source"  # an update's new data: its path, or the prediction logs and time range
VERSION_TAG_NEW_DATA_DIGEST = "new_data_digest"  # content hash of that new data

# Update: what its new data is, and what it logs
NEW_DATA_FEEDBACK = "feedback"  # new_data=feedback: the labelled traffic in the prediction logs
TAG_UPDATE_KEY = "rtdeploy.update_key"  # commit, model, new data and settings: the same key, the same update
TAG_REUSED_UPDATE = "rtdeploy.reused_update"  # an update run that found its work done: the run that did it
NEW_SAMPLES = "new_samples"  # labelled new samples taken
REFUSED_SAMPLES = "refused_samples"  # labelled new samples refused (reasons in the run's output and tags)
REPLAYED_SAMPLES = "replayed_samples"  # old training samples mixed in
TUNED_LEARNING_RATE = "tuned_learning_rate"  # learning_rate=tune: the fine-tuning rate chosen
TUNED_REPLAY_FRACTION = "tuned_replay_fraction"  # and the replay share
TUNED_IN_BUDGET = "tuned_in_budget"  # 1 when the choice kept the old validation accuracy within budget
UPDATE_TUNING = "update_tuning.json"  # every candidate's settings and validation figures
UPDATE_TUNING_FIGURE = "update_tuning.png"
ACCURACY_OLD = "accuracy_old"  # on the original test split
ACCURACY_NEW = "accuracy_new"  # on the held-out part of the new data
CHALLENGER_ACCURACY_OLD = f"challenger_{ACCURACY_OLD}"  # each model's, on the same samples
CHAMPION_ACCURACY_OLD = f"champion_{ACCURACY_OLD}"
CHALLENGER_ACCURACY_NEW = f"challenger_{ACCURACY_NEW}"
CHAMPION_ACCURACY_NEW = f"champion_{ACCURACY_NEW}"
# Autopilot: one metric step per round
ROUND_ALERTED = "alerted"  # 1 when the round's monitor alerted (any reason)
ROUND_UPDATED = "updated"  # 1 when the round ran update
ROUND_PROMOTED = "promoted"  # 1 when that update's challenger became champion
ROUND_FAILED = "failed"  # 1 when a step of the round exited 1 or 2, a log was unreadable, or monitoring incomplete
TAG_ROUND_FAILURE = "rtdeploy.failure.round{number}"  # why that round failed
TAG_ROUNDS = "rtdeploy.rounds"

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
