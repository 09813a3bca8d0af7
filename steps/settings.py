"""Every step's settings, one frozen dataclass per entry point: the only place a default is written.

MLproject repeats the defaults (tests/test_project_files.py keeps the two
equal); README documents every field. Pure: the pipeline, the registry
commands and the TensorFlow stages all read these without loading each other.
A bad value fails in `__post_init__`, naming the parameter and the valid values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from steps import contract
from steps.core.plan import ALL_VARIANTS, plan_for
from steps.core.selection import Budget
from steps.parameters import UsageError, require_choice, require_positive, setting

AUTO = "auto"  # a setting this step works out: env_manager (the one `mlflow run` gave it), learning_rate
TUNE = "tune"  # update's learning_rate: chosen, with the replay share, on validation data (steps/adapt/tuning.py)
ENV_MANAGERS = (AUTO, "local", "virtualenv", "uv", "conda")
ENV_MANAGER_HELP = f"environment of the child runs: {', '.join(ENV_MANAGERS)} (auto = this run's)"
LOGS_HELP = "the servers' prediction logs: a path, a comma-separated list or a glob (one file per replica)"
IMAGE_SIZE_HELP = "side in pixels that images of an image folder are resized to, and that shapes are drawn at"
ROBUSTNESS_HELP = (
    f"corruption suite each deployable is measured under ({', '.join(contract.ROBUSTNESS_MODES)}): full, 8 kinds "
    "at 5 levels; fast, only each kind's default level (a fifth of the cost, for photo-sized data); off"
)
AUGMENT_HELP = (
    f"{' or '.join(contract.AUGMENTATIONS)}: standard puts random translation, rotation, zoom, contrast and noise "
    "in front of the model while it trains (never in a deployable)"
)
DISTILL_HELP = (
    "weight in [0, 1) of {teacher}'s answers in the training targets (knowledge distillation; 0: the labels "
    "alone); update sets it so that a model adapted to new data keeps what it knew"
)
LEARNING_RATE = 0.001  # train's step size unless auto picks another
# auto's rate for a mobilenet built here: on shapes at 96 px, val 72% after 30 epochs at 0.001, 96% after 17 at 0.01
FROM_SCRATCH_RATE = 0.01
MAX_SIMULATED_REQUESTS = 1_000_000  # simulate is bounded: it is a test tool, not a load generator left running


MAX_ROBUST_ACCURACY_DROP = 0.02  # main's, search's and (tuning) update's budget: measured in issue 22
TUNE_RATE_FACTORS = (1 / 3, 1.0, 3.0)  # learning_rate=tune: times the rate `auto` gives (a tenth of the original's)
TUNE_REPLAY_FRACTIONS = (0.5, 0.7, 0.85)  # learning_rate=tune: around update's default (bench/update_strategies.py)


def require_rate(learning_rate: str, words: tuple[str, ...] = (AUTO,)) -> None:
    """A positive number or one of `words`."""
    if learning_rate in words:
        return
    try:
        require_positive("learning_rate", float(learning_rate))
    except ValueError:
        named = " or ".join(f"'{word}'" for word in words)
        raise UsageError(f"learning_rate must be {named} or a positive number, got {learning_rate!r}") from None


@dataclass(frozen=True)
class TrainConfig:
    """Train a float Keras classifier (or fine-tune base_model) and export it to LiteRT."""

    dataset: str = setting(
        "digits",
        "'digits', 'shapes' (drawn at image_size), a .npz file (x_train, y_train, x_test, y_test) or an image folder",
    )
    image_size: int = setting(28, IMAGE_SIZE_HELP)
    architecture: str = setting("cnn", f"{' or '.join(contract.ARCHITECTURES)}; unused when base_model is given")
    width: int = setting(32, "filters of the first conv layer; every layer scales with it (cnn, dscnn, mlp)")
    alpha: float = setting(0.35, "width multiplier of the mobilenets (1.0: the published network)")
    batchnorm: str = setting(
        "auto",
        f"{', '.join(contract.BATCHNORM_MODES)}: auto trains a BatchNorm layer at its initial statistics (momentum "
        "0.9) and keeps one with learned statistics in inference mode",
    )
    optimizer: str = setting("adam", f"one of {', '.join(contract.OPTIMIZERS)}")
    learning_rate: str = setting(
        AUTO,
        f"optimizer step size, or '{AUTO}': {FROM_SCRATCH_RATE} for a mobilenet built here (BatchNorm networks "
        f"trained from scratch; {LEARNING_RATE} learnt shapes at 96 px too slowly), else {LEARNING_RATE}",
    )
    epochs: int = setting(40, "most epochs to train; early stopping on validation loss usually ends sooner")
    batch_size: int = setting(32, "samples per gradient step")
    patience: int = setting(5, "epochs without a better validation loss before stopping (best weights kept)")
    seed: int = setting(
        42, "seed for weight init and shuffling (the data split is fixed, so every stage tests on the same samples)"
    )
    base_model: str = setting(
        "", "a Keras model to fine-tune instead of a new one: MLflow model URI, .keras/.h5 or SavedModel"
    )
    augment: str = setting("none", AUGMENT_HELP)
    robustness: str = setting("full", ROBUSTNESS_HELP)
    distill: float = setting(0.0, DISTILL_HELP.format(teacher="base_model (as it was before this training)"))

    def __post_init__(self):
        require_choice("optimizer", self.optimizer, contract.OPTIMIZERS)
        require_choice("augment", self.augment, contract.AUGMENTATIONS)
        require_share("distill", self.distill)
        require_choice("robustness", self.robustness, contract.ROBUSTNESS_MODES)
        require_choice("architecture", self.architecture, contract.ARCHITECTURES)
        require_choice("batchnorm", self.batchnorm, contract.BATCHNORM_MODES)
        require_rate(self.learning_rate)
        for name in ("width", "alpha", "epochs", "batch_size", "image_size"):
            require_positive(name, getattr(self, name))
        if self.patience < 0:
            raise ValueError(f"patience must be >= 0, got {self.patience}")

    def step_size(self) -> float:
        """The learning rate this training uses: the one given, or auto's choice."""
        if self.learning_rate != AUTO:
            return float(self.learning_rate)
        built_mobilenet = self.architecture in contract.MOBILENETS and not self.base_model
        return FROM_SCRATCH_RATE if built_mobilenet else LEARNING_RATE

    def check_input_side(self, side: int | None) -> None:
        """The architecture must take the data's images: the mobilenets need at least 32x32 px. Called with
        the side of the data's images as soon as it is known (None: not before the data is read)."""
        if side is None or self.base_model or self.architecture not in contract.MOBILENETS:
            return
        if side < contract.MOBILENET_MIN_SIDE:
            raise UsageError(
                f"architecture={self.architecture} needs images of at least {contract.MOBILENET_MIN_SIDE}x"
                f"{contract.MOBILENET_MIN_SIDE} px, the data's are {side}x{side}; pass image_size=96 (image "
                "folders and dataset=shapes) or use architecture=cnn or dscnn"
            )


def layer_map(name: str, text: str) -> dict[str, float] | None:
    """A per-layer setting given as a JSON object {layer name: number}; None when it is empty."""
    if not text:
        return None
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f'{name} must be a JSON object such as {{"dense": ...}}, got {text[:60]!r} ({error})')
    if not isinstance(parsed, dict) or not all(
        isinstance(value, (int, float)) and not isinstance(value, bool) for value in parsed.values()
    ):
        raise ValueError(f'{name} must map layer names to numbers, e.g. {{"dense": ...}}; got {text[:60]!r}')
    return parsed


@dataclass(frozen=True)
class FineTuneConfig:
    """Settings every derived variant shares: the parent, the data and the fine-tuning run."""

    model_uri: str = setting("", "parent Keras model: runs:/<run_id>/keras_model, models:/<name>@<alias>, or a file")
    dataset: str = setting("digits", "the parent's data set: 'digits', 'shapes', a .npz file or an image folder")
    image_size: int = setting(28, IMAGE_SIZE_HELP)
    epochs: int = setting(4, "fine-tuning epochs")
    learning_rate: float = setting(0.0005, "fine-tuning step size (Adam)")
    batch_size: int = setting(32, "samples per gradient step")
    seed: int = setting(42, "seed for weight init and shuffling")
    robustness: str = setting("full", ROBUSTNESS_HELP)
    distill: float = setting(0.0, DISTILL_HELP.format(teacher="the parent model"))
    augment: str = setting("none", AUGMENT_HELP + "; main passes train's, so compression keeps what it taught")

    def __post_init__(self):
        require_choice("robustness", self.robustness, contract.ROBUSTNESS_MODES)
        require_choice("augment", self.augment, contract.AUGMENTATIONS)
        require_share("distill", self.distill)
        if not self.model_uri:
            raise ValueError(
                f"model_uri is required: the parent Keras model, e.g. runs:/<train_run_id>/{contract.KERAS_MODEL}"
            )
        for name in ("epochs", "learning_rate", "batch_size", "image_size"):
            require_positive(name, getattr(self, name))


@dataclass(frozen=True)
class PruneConfig(FineTuneConfig):
    """Prune a Keras model's kernels to a target sparsity and fine-tune it."""

    epochs: int = setting(8, "fine-tuning epochs; sparsity reaches the target after 70% of them")
    target_sparsity: float = setting(0.8, "fraction of kernel weights set to zero, in [0, 1) (unstructured)")
    structure: str = setting(
        "unstructured", f"{' or '.join(contract.PRUNE_STRUCTURES)} (2 zeros in every 4 input-channel weights)"
    )
    layer_sparsity: str = setting(
        "", 'a target per layer instead, as JSON {"conv0b": 0.9, "dense": 0.97}; layers left out stay dense'
    )

    def __post_init__(self):
        super().__post_init__()
        require_choice("structure", self.structure, contract.PRUNE_STRUCTURES)
        if not 0.0 <= self.target_sparsity < 1.0:
            raise ValueError(f"target_sparsity must be in [0, 1), got {self.target_sparsity}")
        for layer, target in (self.per_layer or {}).items():
            if not 0.0 <= target < 1.0:
                raise ValueError(f"layer_sparsity of {layer!r} must be in [0, 1), got {target}")

    @property
    def per_layer(self) -> dict[str, float] | None:
        """layer_sparsity as {layer: target}, or None: every prunable layer gets target_sparsity."""
        targets = layer_map("layer_sparsity", self.layer_sparsity)
        return None if targets is None else {layer: float(target) for layer, target in targets.items()}

    @property
    def variant_suffix(self) -> str:
        if self.per_layer is not None:
            return "pruned-per-layer"
        return "pruned2:4" if self.structure == "2:4" else f"pruned{round(self.target_sparsity * 100)}"


@dataclass(frozen=True)
class ClusterConfig(FineTuneConfig):
    """Cluster a Keras model's kernels to n_clusters shared values and fine-tune it."""

    learning_rate: float = setting(0.0001, "fine-tuning step size (Adam); small, so centroids settle")
    n_clusters: int = setting(16, "distinct values per kernel, >= 2")
    preserve_sparsity: bool = setting(True, "keep a pruned parent's zeros (sparsity-preserving clustering)")
    layer_clusters: str = setting(
        "", 'a count per layer instead, as JSON {"conv0b": 3, "dense": 8}; layers left out stay unclustered'
    )

    def __post_init__(self):
        super().__post_init__()
        given = layer_map("layer_clusters", self.layer_clusters) or {}
        counts = {"n_clusters": self.n_clusters} | {f"layer_clusters of {layer!r}": n for layer, n in given.items()}
        for name, count in counts.items():
            if count < 2 or count != int(count):
                raise ValueError(
                    f"{name} must be a whole number >= 2 (one value per kernel cannot represent it), got {count}"
                )

    @property
    def per_layer(self) -> dict[str, int] | None:
        """layer_clusters as {layer: count}, or None: every clusterable layer gets n_clusters."""
        counts = layer_map("layer_clusters", self.layer_clusters)
        return None if counts is None else {layer: int(count) for layer, count in counts.items()}

    @property
    def variant_suffix(self) -> str:
        return "c-per-layer" if self.per_layer is not None else f"c{self.n_clusters}"


@dataclass(frozen=True)
class QuantizeConfig(FineTuneConfig):
    """Convert a Keras model to a LiteRT deployable, quantized by `mode`."""

    epochs: int = setting(3, "quantization-aware fine-tuning epochs (mode=qat only)")
    learning_rate: float = setting(0.0001, "quantization-aware fine-tuning step size (mode=qat only)")
    mode: str = setting("int8", f"one of {', '.join(contract.QUANTIZE_MODES)}")

    def __post_init__(self):
        super().__post_init__()
        require_choice("mode", self.mode, contract.QUANTIZE_MODES)

    @property
    def variant_suffix(self) -> str:
        return {"none": contract.FLOAT32_VARIANT, "qat": "qat-int8"}.get(self.mode, self.mode)


@dataclass(frozen=True)
class EvaluateConfig:
    """Evaluate a model (Keras or LiteRT) on the test split of a data set."""

    model_uri: str = setting(
        "", "runs:/<run_id>/litert_model, runs:/<run_id>/keras_model, models:/<name>@champion, ..."
    )
    dataset: str = setting("digits", "'digits', 'shapes', a .npz file or an image folder (the model's data set)")
    image_size: int = setting(28, IMAGE_SIZE_HELP)
    top_confusions: int = setting(5, "how many of the most frequent true->predicted confusions to show")
    latency_runs: int = setting(300, "timed single-sample predictions (after warm-up) for the latency percentiles")
    threads: int = setting(
        2,
        "LiteRT threads of a second latency measurement, logged as latency_p50_ms_threads<N> "
        "(latency_p*_ms stay one-thread; 1: no second measurement)",
    )
    robustness: str = setting("full", ROBUSTNESS_HELP)
    explained_errors: int = setting(
        6, "the most confident mistakes shown with saliency maps, beside the float baseline's maps (0: none)"
    )

    def __post_init__(self):
        require_choice("robustness", self.robustness, contract.ROBUSTNESS_MODES)
        if self.explained_errors < 0:
            raise ValueError(f"explained_errors must be >= 0, got {self.explained_errors}")
        if not self.model_uri:
            raise ValueError(
                f"model_uri is required, e.g. runs:/<run_id>/{contract.LITERT_MODEL} "
                f"or models:/{contract.DEFAULT_MODEL_NAME}@{contract.CHAMPION}"
            )
        for name in ("image_size", "top_confusions", "latency_runs", "threads"):
            require_positive(name, getattr(self, name))


@dataclass(frozen=True)
class GateConfig:
    """The gate's thresholds, shared by register and promote."""

    model_name: str = setting(contract.DEFAULT_MODEL_NAME, "registered model name")
    min_accuracy_change: float = setting(
        0.0, "tolerance: how far below the champion's accuracy (same test data) a challenger may be"
    )
    min_accuracy: float = setting(0.9, "absolute accuracy floor for any champion")
    min_robust_accuracy_change: float = setting(
        0.02,
        "tolerance: how far below the champion's robust accuracy (the corruption suite, same test samples) a "
        "challenger may be; not checked when the challenger's run had robustness off",
    )

    def __post_init__(self):
        if self.min_accuracy_change < 0:
            raise ValueError(f"min_accuracy_change is a tolerance and must be >= 0, got {self.min_accuracy_change}")
        require_share("min_robust_accuracy_change", self.min_robust_accuracy_change)
        if not 0 <= self.min_accuracy <= 1:
            raise ValueError(f"min_accuracy must be in [0, 1], got {self.min_accuracy}")


@dataclass(frozen=True)
class BudgetConfig:
    """How far below the float baseline, on the validation split, a chosen variant may be (main, register and
    search choose within it)."""

    max_accuracy_drop: float = setting(
        0.005, "largest validation-accuracy loss vs the float32 baseline a chosen variant may have"
    )
    max_robust_accuracy_drop: float = setting(
        MAX_ROBUST_ACCURACY_DROP,
        "largest validation robust-accuracy loss (the corruption suite) vs the float32 baseline a chosen variant "
        "may have; variants measured with robustness=off are not held to it",
    )

    def __post_init__(self):
        require_share("max_accuracy_drop", self.max_accuracy_drop)
        require_share("max_robust_accuracy_drop", self.max_robust_accuracy_drop)

    @property
    def budget(self) -> Budget:
        return Budget(self.max_accuracy_drop, self.max_robust_accuracy_drop)


@dataclass(frozen=True)
class RegisterConfig(GateConfig, BudgetConfig):
    """Register the best variant of a main run as challenger and promote it if it passes the gate."""

    run_id: str = setting("", "the main (pipeline) run whose variants to choose from")
    objective: str = setting(
        "size", f"best means smallest: {' or '.join(contract.OBJECTIVES)} (gzip size or p50 latency)"
    )

    def __post_init__(self):
        GateConfig.__post_init__(self)
        BudgetConfig.__post_init__(self)
        if not self.run_id:
            raise ValueError("run_id is required: the id of a finished main (pipeline) run")
        require_choice("objective", self.objective, tuple(contract.OBJECTIVES))


@dataclass(frozen=True)
class PromoteConfig(GateConfig):
    """Make a registered version the champion (the old champion becomes previous)."""

    version: str = setting("", "the version number to promote")
    force: bool = setting(False, "skip the gate (recorded as validation_status=forced on the version)")

    def __post_init__(self):
        super().__post_init__()
        if not self.version:
            raise ValueError("version is required: the registered version number to promote")


@dataclass(frozen=True)
class RollbackConfig:
    """Serve the previous champion again: champion and previous swap."""

    model_name: str = setting(contract.DEFAULT_MODEL_NAME, "registered model name")


@dataclass(frozen=True)
class ServeConfig:
    """Serve a registered LiteRT deployable over HTTP, following its alias."""

    model_uri: str = setting(
        f"models:/{contract.DEFAULT_MODEL_NAME}@{contract.CHAMPION}",
        "models:/<name>@<alias> (followed) or models:/<name>/<version>",
    )
    host: str = setting("127.0.0.1", "address to bind; 0.0.0.0 exposes the server to the network")
    port: int = setting(8080, "TCP port")
    poll_seconds: float = setting(5.0, "how often to check where the alias points (0: never)")
    max_batch_size: int = setting(1, "samples merged into one model invocation; 1 turns dynamic batching off")
    max_batch_wait_ms: float = setting(
        2.0, "how long a request may wait for others to batch with; 0 batches only requests that arrived together"
    )
    max_queue: int = setting(256, "prediction requests in progress at most; more are answered 503 (Retry-After)")
    max_body_bytes: int = setting(4 * 1024 * 1024, "largest request body accepted (413 above)")
    prediction_log: str = setting(contract.DEFAULT_PREDICTION_LOG, "SQLite file of the prediction and feedback log")
    log_inputs: float = setting(
        1.0, "share of requests whose preprocessed input images are kept in the log (probabilities always are)"
    )
    workers: int = setting(
        1, "server processes sharing the port (SO_REUSEPORT); each follows the alias and writes its own log"
    )
    threads: int = setting(
        1, "LiteRT threads per model invocation; more lowers one request's latency, not the throughput under load"
    )
    grpc_port: int = setting(
        0, "TCP port of the Open Inference Protocol's gRPC service (0: off); REST v2 is always on `port`"
    )
    explain_concurrency: int = setting(
        1, "explanations (POST /explain, dozens of model calls each) computed at once; more wait (explain_queue)"
    )
    explain_queue: int = setting(16, "explanations waiting for a slot at most; more are answered 503")
    log_sync: str = setting(
        contract.LOG_SYNC_NORMAL,
        f"{contract.LOG_SYNC_NORMAL}: an answered prediction survives a crash of the server process; "
        f"{contract.LOG_SYNC_FULL}: also a power loss (an fsync per commit group)",
    )

    def __post_init__(self):
        for name in (
            "port",
            "max_batch_size",
            "max_queue",
            "max_body_bytes",
            "workers",
            "threads",
            "explain_concurrency",
        ):
            require_positive(name, getattr(self, name))
        if self.explain_queue < 0:
            raise ValueError(f"explain_queue must be >= 0, got {self.explain_queue}")
        if not 0 <= self.grpc_port <= 65535 or self.grpc_port == self.port:
            raise ValueError(f"grpc_port is 0 (off) or a TCP port other than port {self.port}, got {self.grpc_port}")
        if self.poll_seconds < 0 or self.max_batch_wait_ms < 0:
            raise ValueError("poll_seconds and max_batch_wait_ms must be >= 0")
        if not 0 <= self.log_inputs <= 1:
            raise ValueError(f"log_inputs is a share of requests and must be in [0, 1], got {self.log_inputs}")
        require_choice("log_sync", self.log_sync, contract.LOG_SYNC_MODES)


@dataclass(frozen=True)
class MonitorConfig:
    """Judge the served model's recent traffic: performance, errors, live accuracy and drift, with alerts."""

    prediction_log: str = setting(contract.DEFAULT_PREDICTION_LOG, LOGS_HELP)
    model_name: str = setting(contract.DEFAULT_MODEL_NAME, "registered model whose traffic to judge")
    window_minutes: float = setting(60.0, "length of each window the range is cut into")
    since: str = setting("", "start of the range: ISO time (2026-11-29T10:00, UTC) or unix seconds; empty: first row")
    until: str = setting("", "end of the range, same forms; empty: the log's last row")
    min_samples: int = setting(100, "windows with fewer predicted samples are reported as too small, not judged")
    max_p99_ms: float = setting(50.0, "latency alert above this p99 (ms, request received to answer)")
    min_accuracy: float = setting(0.9, "accuracy alert when labelled traffic shows the live accuracy below this")
    max_error_rate: float = setting(0.05, "errors alert above this share of requests refused (4xx and 5xx)")
    drift_alpha: float = setting(0.01, "drift alert when a window's drift tests reject at this level (family-wise)")
    consecutive: int = setting(2, "an alert needs this many judged windows in a row that break the same threshold")
    fail_on_alert: bool = setting(False, "exit non-zero when there is an alert (so a scheduler can run update)")

    def __post_init__(self):
        for name in ("window_minutes", "min_samples", "max_p99_ms", "consecutive"):
            require_positive(name, getattr(self, name))
        for name in ("min_accuracy", "max_error_rate", "drift_alpha"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")


@dataclass(frozen=True)
class SimulateConfig:
    """Send held-out samples (optionally drifted) to a running server, and their true labels as feedback."""

    url: str = setting("http://127.0.0.1:8080", "the server to drive")
    dataset: str = setting("digits", "whose test split to send: 'digits', 'shapes', a .npz file or an image folder")
    image_size: int = setting(28, IMAGE_SIZE_HELP)
    requests: int = setting(500, "prediction requests to send, one sample each (test samples are reused if fewer)")
    concurrency: int = setting(4, "requests in flight at once")
    drift: str = setting("none", f"what to do to the samples first: {', '.join(contract.DRIFTS)}")
    severity: str = setting(
        "default",
        "strength of the drift in its kind's unit (steps/datasets/corruptions.py), or 'default': what monitoring "
        "must see",
    )
    feedback_fraction: float = setting(0.5, "share of predictions whose true label is sent to /feedback")
    seed: int = setting(42, "which samples, in which order, and the drift's randomness")

    def __post_init__(self):
        require_choice("drift", self.drift, contract.DRIFTS)
        for name in ("image_size", "requests", "concurrency"):
            require_positive(name, getattr(self, name))
        if self.requests > MAX_SIMULATED_REQUESTS:
            raise ValueError(f"requests must be at most {MAX_SIMULATED_REQUESTS:,}, got {self.requests:,}")
        if self.severity != "default":
            try:
                float(self.severity)
            except ValueError:
                raise ValueError(f"severity must be 'default' or a number, got {self.severity!r}") from None
        if not 0 <= self.feedback_fraction <= 1:
            raise ValueError(f"feedback_fraction must be in [0, 1], got {self.feedback_fraction}")
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, got {self.url!r}")


@dataclass(frozen=True)
class PipelineConfig(GateConfig, BudgetConfig):
    """Run every stage on one data set (the parameters of `train` apply to its stage); the gate's thresholds
    go to its register step, so a champion's floor is the user's to set (a hard data set may never reach 0.9)."""

    model_name: str = setting(contract.DEFAULT_MODEL_NAME, "registered model the best variant is registered under")
    env_manager: str = setting(AUTO, ENV_MANAGER_HELP)
    variants: str = setting(ALL_VARIANTS, "which compression variants to make: all, or plan keys like int8,pruned-int8")
    reuse_runs: bool = setting(True, "reuse a finished child run with the same entry point, parameters and git commit")

    def __post_init__(self):
        GateConfig.__post_init__(self)
        BudgetConfig.__post_init__(self)
        require_choice("env_manager", self.env_manager, ENV_MANAGERS)
        plan_for(self.variants)  # raises on unknown keys


def require_share(name: str, value: float) -> None:
    """A share, a weight or a budget of accuracy: in [0, 1)."""
    if not 0 <= value < 1:
        raise ValueError(f"{name} must be in [0, 1), got {value}")


QUANTIZATIONS = ("ptq", "qat")  # what search may choose: post-training int8, or quantization-aware int8


@dataclass(frozen=True)
class SearchConfig(FineTuneConfig, GateConfig, BudgetConfig):
    """Search compressions of a Keras model with Optuna: the smallest deployable within the accuracy budget."""

    epochs: int = setting(6, "pruning fine-tuning epochs per trial (clustering and QAT get half as many)")
    learning_rate: float = setting(0.0001, "fine-tuning step size (Adam)")
    n_trials: int = setting(0, "trials this process runs at most (0: as many as timeout_minutes allows)")
    timeout_minutes: float = setting(10.0, "this process starts no trial after this long (0: no limit)")
    storage: str = setting(
        "",
        "Optuna storage: empty keeps the study in memory; an RDB URL (sqlite:///s.db, "
        "postgresql://...) lets several search processes share one study",
    )
    study_name: str = setting("", "the study to create or join; empty: a new study named after this search run")
    quantizations: str = setting(",".join(QUANTIZATIONS), "which quantizations trials may choose: ptq, qat or both")
    register: bool = setting(True, "register the best trial's deployable and put it through the gate, as main does")

    def __post_init__(self):
        FineTuneConfig.__post_init__(self)
        GateConfig.__post_init__(self)
        BudgetConfig.__post_init__(self)
        if self.n_trials < 0 or self.timeout_minutes < 0:
            raise ValueError(f"n_trials and timeout_minutes must be >= 0, got {self.n_trials}, {self.timeout_minutes}")
        if not (self.n_trials or self.timeout_minutes):
            raise ValueError("n_trials=0 and timeout_minutes=0 would search forever; set either")
        if not self.quantization_choices:
            raise ValueError(f"quantizations is empty; choose from {', '.join(QUANTIZATIONS)}")
        for choice in self.quantization_choices:
            require_choice("quantizations", choice, QUANTIZATIONS)

    @property
    def quantization_choices(self) -> list[str]:
        return [choice.strip() for choice in self.quantizations.split(",") if choice.strip()]


@dataclass(frozen=True)
class UpdateConfig:
    """Fine-tune the champion's float parent on new data (with replayed old data), re-apply its compression
    recipe, and promote the result only if it passes the gate on old and new held-out data and serves."""

    new_data: str = setting(
        "", f"'{contract.NEW_DATA_FEEDBACK}' (labelled traffic in prediction_log), a .npz file or an image folder"
    )
    model_name: str = setting(contract.DEFAULT_MODEL_NAME, "registered model whose champion to update")
    prediction_log: str = setting(contract.DEFAULT_PREDICTION_LOG, f"with new_data=feedback: {LOGS_HELP}")
    since: str = setting("", "with new_data=feedback: start of the labelled traffic; empty: the champion's promotion")
    until: str = setting("", "with new_data=feedback: end of the labelled traffic; empty: now")
    learning_rate: str = setting(
        AUTO,
        f"fine-tuning step size; '{AUTO}': a tenth of the original training's; '{TUNE}': "
        f"{', '.join(f'{factor:.3g}' for factor in TUNE_RATE_FACTORS)} times auto's, with the replay share "
        f"{', '.join(map(str, TUNE_REPLAY_FRACTIONS))} (replay_fraction is then not used), the pair chosen on "
        f"validation data from {len(TUNE_RATE_FACTORS) * len(TUNE_REPLAY_FRACTIONS)} fine-tunings of the float "
        "parent before the child runs",
    )
    epochs: int = setting(
        20, "most fine-tuning epochs; early stopping on the new validation samples usually ends sooner"
    )
    patience: int = setting(3, "epochs without a better validation loss before stopping (best weights kept)")
    batch_size: int = setting(32, "samples per gradient step")
    replay_fraction: float = setting(
        0.7,
        "share of each batch (on average) drawn from the old training data, in [0, 1); 0.7 from "
        "bench/update_strategies.py: the gate refused it least, at a small cost on the new data",
    )
    max_old_drop: float = setting(
        0.01,
        f"most the challenger may lose against the champion on the old test split (with learning_rate={TUNE}: a "
        "candidate, against the float parent on the old validation split)",
    )
    max_robust_accuracy_drop: float = setting(
        MAX_ROBUST_ACCURACY_DROP,
        f"with learning_rate={TUNE}: most of its robust accuracy (the corruption suite) a candidate may lose "
        "against the float parent on the old validation split",
    )
    distill: float = setting(
        0.0,
        "weight of the champion's own answers in the training targets of train (its float parent as teacher) and of "
        "each recipe step (its parent as teacher): Learning without Forgetting; 0: the labels alone",
    )
    seed: int = setting(42, "the new data's split, the replay draw, and training")
    env_manager: str = setting(AUTO, ENV_MANAGER_HELP)
    reuse_runs: bool = setting(True, "an update with the same commit, model, new data and settings is not run again")

    def __post_init__(self):
        if not self.new_data:
            raise ValueError(
                f"new_data is required: '{contract.NEW_DATA_FEEDBACK}' (labelled traffic) or a data set path"
            )
        require_choice("env_manager", self.env_manager, ENV_MANAGERS)
        require_rate(self.learning_rate, (AUTO, TUNE))
        for name in ("epochs", "batch_size"):
            require_positive(name, getattr(self, name))
        if self.patience < 0:
            raise ValueError(f"patience must be >= 0, got {self.patience}")
        require_share("replay_fraction", self.replay_fraction)
        require_share("max_old_drop", self.max_old_drop)
        require_share("max_robust_accuracy_drop", self.max_robust_accuracy_drop)
        require_share("distill", self.distill)

    def fine_tuning_rate(self, original: float) -> float:
        """The rate given, or a tenth of the original's (tune: the rate its candidates are multiples of)."""
        return original / 10 if self.learning_rate in (AUTO, TUNE) else float(self.learning_rate)


MAX_AUTOPILOT_ROUNDS = 1000  # no endless loop, even asked for one


@dataclass(frozen=True)
class AutopilotConfig:
    """Every interval, monitor the served model; on a drift or accuracy alert with enough labelled traffic,
    update it from that traffic. Bounded in rounds and time."""

    model_name: str = setting(contract.DEFAULT_MODEL_NAME, "registered model to watch and update")
    prediction_log: str = setting(contract.DEFAULT_PREDICTION_LOG, LOGS_HELP)
    interval_minutes: float = setting(60.0, "time between rounds; each monitor window is this long")
    consecutive: int = setting(2, "windows in a row that must break a threshold before a round alerts")
    min_samples: int = setting(100, "windows with fewer predicted samples are not judged")
    min_labels: int = setting(100, "labelled samples since the champion's promotion needed to update")
    max_rounds: int = setting(3, f"rounds at most (1 to {MAX_AUTOPILOT_ROUNDS})")
    max_minutes: float = setting(240.0, "stop starting rounds after this long")
    max_failures: int = setting(
        1, "failed rounds in a row (a step that exits 1 or 2, or monitoring_incomplete) after which it exits 1"
    )
    env_manager: str = setting(AUTO, ENV_MANAGER_HELP)

    def __post_init__(self):
        require_choice("env_manager", self.env_manager, ENV_MANAGERS)
        for name in ("interval_minutes", "consecutive", "min_samples", "max_rounds", "max_minutes", "max_failures"):
            require_positive(name, getattr(self, name))
        if self.max_rounds > MAX_AUTOPILOT_ROUNDS:
            raise ValueError(f"max_rounds must be at most {MAX_AUTOPILOT_ROUNDS}, got {self.max_rounds}")
        if self.min_labels < 0:
            raise ValueError(f"min_labels must be >= 0, got {self.min_labels}")
