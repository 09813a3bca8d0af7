"""The project's declarations agree with each other: MLproject defaults, dependency lists, CLI checks."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import tomllib

import pytest
import yaml

from steps import contract
from steps.parameters import parse_config, parse_configs
from steps.settings import (
    AutopilotConfig,
    ClusterConfig,
    EvaluateConfig,
    MonitorConfig,
    PipelineConfig,
    PromoteConfig,
    PruneConfig,
    QuantizeConfig,
    RegisterConfig,
    RollbackConfig,
    SearchConfig,
    ServeConfig,
    SimulateConfig,
    TrainConfig,
    UpdateConfig,
)
from tests.support.commands import PROJECT

ENTRY_POINT_CONFIGS = {
    contract.TRAIN: (TrainConfig,),
    contract.MAIN: (PipelineConfig, TrainConfig),
    contract.PRUNE: (PruneConfig,),
    contract.CLUSTER: (ClusterConfig,),
    contract.QUANTIZE: (QuantizeConfig,),
    contract.EVALUATE: (EvaluateConfig,),
    contract.REGISTER: (RegisterConfig,),
    contract.PROMOTE: (PromoteConfig,),
    contract.ROLLBACK: (RollbackConfig,),
    "serve": (ServeConfig,),
    contract.MONITOR: (MonitorConfig,),
    contract.SIMULATE: (SimulateConfig,),
    contract.UPDATE: (UpdateConfig,),
    contract.AUTOPILOT: (AutopilotConfig,),
    contract.SEARCH: (SearchConfig,),
}


def _mlproject():
    return yaml.safe_load((PROJECT / "MLproject").read_text())


@pytest.mark.parametrize("entry_point", sorted(ENTRY_POINT_CONFIGS))
def test_mlproject_parameters_and_defaults_equal_the_step_config(entry_point):
    declared = _mlproject()["entry_points"][entry_point]["parameters"]
    fields = {f.name: f.default for cls in ENTRY_POINT_CONFIGS[entry_point] for f in dataclasses.fields(cls)}
    assert set(declared) == set(fields)
    for name, spec in declared.items():
        default = fields[name]
        if "default" not in spec:  # required in MLproject: the config must not accept its own placeholder
            assert default == "", f"{entry_point}.{name} is required in MLproject but defaults to {default!r}"
            continue
        parsed = type(default)(spec["default"]) if not isinstance(default, bool) else str(spec["default"]) == "True"
        assert parsed == default, f"{entry_point}.{name}: MLproject says {spec['default']!r}, config says {default!r}"
    command = _mlproject()["entry_points"][entry_point]["command"]
    for name in declared:
        assert f"--{name} {{{name}}}" in command, f"{entry_point} command does not pass {name}"


def test_the_monitor_default_drift_level_is_the_one_the_drift_tests_are_calibrated_at():
    from steps.monitoring.drift_statistics import DEFAULT_ALPHA  # settings stays pure: it cannot import scipy

    assert MonitorConfig().drift_alpha == DEFAULT_ALPHA


def test_pyproject_conda_and_python_env_list_the_same_dependencies():
    pyproject = _pyproject_dependencies()
    conda = yaml.safe_load((PROJECT / "conda.yaml").read_text())["dependencies"]
    conda_pip = next(item["pip"] for item in conda if isinstance(item, dict))
    python_env = yaml.safe_load((PROJECT / "python_env.yaml").read_text())["dependencies"]
    assert pyproject == conda_pip == python_env
    assert "python=3.11" in conda


def test_the_serving_install_pins_what_pyproject_pins_and_leaves_training_out():
    """serving-requirements.txt: the server's packages, same versions; mlflow's client only, for the fetch child."""
    from packaging.requirements import Requirement

    full = {Requirement(line).name: Requirement(line) for line in _pyproject_dependencies()}
    lines = (PROJECT / "serving-requirements.txt").read_text().splitlines()
    serving = [Requirement(line) for line in lines if line.strip() and not line.startswith("#")]
    for requirement in serving:
        same = full["mlflow"] if requirement.name == "mlflow-skinny" else full[requirement.name]
        assert requirement.specifier == same.specifier, requirement
    assert not {"tensorflow", "tf-keras", "tensorflow-model-optimization", "mlflow"} & {r.name for r in serving}


def _pyproject_dependencies() -> list[str]:
    return tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]["dependencies"]


def test_unknown_optimizer_fails_listing_the_valid_ones(capsys):
    with pytest.raises(SystemExit):
        parse_config(TrainConfig, ["--optimizer", "adamw"])
    error = capsys.readouterr().err
    assert "optimizer='adamw' is not valid" in error
    assert all(name in error for name in contract.OPTIMIZERS)


def test_unknown_parameter_is_an_error_not_ignored(capsys):
    with pytest.raises(SystemExit):
        parse_config(TrainConfig, ["--epoch", "3"])
    assert "unrecognized arguments: --epoch" in capsys.readouterr().err


def test_options_take_dashes_as_well_as_the_underscores_of_mlproject():
    assert parse_config(TrainConfig, ["--learning-rate", "0.01"]).step_size() == 0.01
    assert parse_config(TrainConfig, ["--learning_rate", "0.02"]).step_size() == 0.02


def test_shared_parameters_reach_every_config():
    pipeline, train = parse_configs((PipelineConfig, TrainConfig), ["--epochs", "3", "--reuse_runs", "false"])
    assert train.epochs == 3 and pipeline.reuse_runs is False


@pytest.mark.parametrize(
    "bad",
    [{"learning_rate": "0"}, {"learning_rate": "fast"}, {"epochs": 0}, {"architecture": "resnet"}, {"patience": -1}],
)
def test_out_of_range_settings_are_rejected(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        TrainConfig(**bad)


PARENT = "runs:/parent/keras_model"


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: PruneConfig(model_uri=PARENT, target_sparsity=1.0), r"target_sparsity must be in \[0, 1\)"),
        (lambda: PruneConfig(model_uri=PARENT, target_sparsity=-0.1), r"target_sparsity must be in \[0, 1\)"),
        (
            lambda: PruneConfig(model_uri=PARENT, structure="4:8"),
            "structure='4:8' is not valid; use one of: unstructured, 2:4",
        ),
        (lambda: ClusterConfig(model_uri=PARENT, n_clusters=1), "n_clusters must be a whole number >= 2"),
        (lambda: PruneConfig(model_uri=PARENT, layer_sparsity='{"dense": 1.2}'), r"of 'dense' must be in \[0, 1\)"),
        (lambda: PruneConfig(model_uri=PARENT, layer_sparsity="dense=0.9"), "layer_sparsity must be a JSON object"),
        (lambda: PruneConfig(model_uri=PARENT, layer_sparsity='{"dense": "high"}'), "must map layer names to numbers"),
        (lambda: ClusterConfig(model_uri=PARENT, layer_clusters='{"dense": 2.5}'), "of 'dense' must be a whole number"),
        (
            lambda: QuantizeConfig(model_uri=PARENT, mode="int4"),
            "mode='int4' is not valid; use one of: none, dynamic, float16, int8, qat",
        ),
        (lambda: QuantizeConfig(), "model_uri is required"),
        (lambda: RegisterConfig(run_id="x", objective="speed"), "objective='speed' is not valid"),
        (lambda: PipelineConfig(max_accuracy_drop=1.0), r"max_accuracy_drop must be in \[0, 1\)"),
        (lambda: UpdateConfig(), "new_data is required: 'feedback'"),
        (lambda: UpdateConfig(new_data="feedback", learning_rate="fast"), "learning_rate must be 'auto' or"),
        (lambda: UpdateConfig(new_data="feedback", replay_fraction=1.0), r"replay_fraction must be in \[0, 1\)"),
        (lambda: AutopilotConfig(max_rounds=10**6), "max_rounds must be at most 1000"),
    ],
    ids=[
        "sparsity-1",
        "sparsity-negative",
        "structure",
        "clusters",
        "layer-sparsity-1.2",
        "layer-sparsity-not-json",
        "layer-sparsity-not-number",
        "layer-clusters-fraction",
        "mode",
        "no-model",
        "objective",
        "budget",
        "no-new-data",
        "update-rate",
        "replay",
        "endless-autopilot",
    ],
)
def test_invalid_settings_fail_naming_the_parameter_and_allowed_values(make, message):
    with pytest.raises(ValueError, match=message):
        make()


# README's section per entry point: its `### ` heading names it in backticks; main also takes every train parameter
README_SECTIONS = {name: (name,) for name in ENTRY_POINT_CONFIGS} | {contract.MAIN: (contract.MAIN, contract.TRAIN)}


def readme_table_parameters(heading_name: str) -> set[str]:
    """Names in the first column of the tables under the `### ` heading that names `heading_name`."""
    readme = (PROJECT / "README.md").read_text()
    sections = [part for part in readme.split("\n### ")[1:] if f"`{heading_name}`" in part.split("\n", 1)[0]]
    assert len(sections) == 1, f"README has {len(sections)} sections headed with `{heading_name}`"
    section = sections[0].split("\n## ", 1)[0]
    cells = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    return {name.strip(" `") for cell in cells for name in cell.split(",")}


@pytest.mark.parametrize("entry_point", sorted(ENTRY_POINT_CONFIGS))
def test_readme_documents_every_parameter_in_its_entry_points_section(entry_point):
    documented = set().union(*(readme_table_parameters(name) for name in README_SECTIONS[entry_point]))
    missing = set(_mlproject()["entry_points"][entry_point]["parameters"]) - documented
    assert not missing, f"README's {entry_point} section does not document {sorted(missing)}"


def test_code_passes_ruff():
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "steps", "tests", "bench"], cwd=PROJECT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout


def readme_test_command() -> str:
    """The one-line command under README's "Install and run the tests"."""
    readme = (PROJECT / "README.md").read_text()
    after = readme.split("Install and run the tests", 1)[1]
    return after.split("```bash\n", 1)[1].split("\n```", 1)[0].strip()


def test_ci_installs_then_runs_readmes_test_command_exactly_once():
    """.ci/run is README's test command, in order, after `set -euo pipefail`; its comments do not count."""
    install, test = readme_test_command().rsplit(" && ", 1)
    code = [line.strip() for line in (PROJECT / ".ci" / "run").read_text().splitlines()]
    code = [line for line in code if line and not line.startswith("#")]
    assert code[0] == "set -euo pipefail"
    pytest_lines = [i for i, line in enumerate(code) if "pytest" in line]
    assert len(pytest_lines) == 1 and code[pytest_lines[0]].startswith(test), code
    install_at = [next(i for i, line in enumerate(code) if step in line) for step in install.split(" && ")]
    assert install_at == sorted(install_at) and install_at[-1] < pytest_lines[0]


def test_every_test_run_lists_its_slowest_tests():
    """The 40-minute CI budget stays visible on every change, from README's command itself."""
    options = tomllib.loads((PROJECT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["addopts"]
    assert "--durations=15" in options.split()
