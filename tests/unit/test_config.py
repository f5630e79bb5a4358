"""Strict serve-config checks (unit tier: no Ray cluster)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from runtime.cli import main as cli_main
from runtime.config import ConfigError, LLMAppConfig, check_serve_config, load_serve_config
from runtime.config.serve_file import APP_ARGS_MODELS
from tests.support.paths import SERVE_CONFIGS
from tests.support.stack import tiny_app

ALL_CONFIGS = sorted(SERVE_CONFIGS.glob("*.yaml"))


def test_serve_configs_exist() -> None:
    names = {p.name for p in ALL_CONFIGS}
    assert {"local.yaml", "gpu.yaml"} <= names


@pytest.mark.parametrize("path", ALL_CONFIGS, ids=lambda p: p.name)
def test_every_serve_config_passes_ray_and_project_models(path: Path) -> None:
    data = yaml.safe_load(path.read_text())
    ServeDeploySchema.model_validate(data)  # Ray's own schema
    schema = load_serve_config(path)  # strict keys + the project's args models
    for app in schema.applications:
        model = APP_ARGS_MODELS.get(app.import_path)
        assert model is not None, f"{path.name}: {app.import_path} has no args model"
        model.model_validate(app.args)


def _local() -> dict:
    return yaml.safe_load((SERVE_CONFIGS / "local.yaml").read_text())


def _llm_index(data: dict) -> int:
    return next(i for i, a in enumerate(data["applications"]) if a["name"] == "llm")


def test_typo_in_args_names_key_file_and_fix() -> None:
    data = _local()
    i = _llm_index(data)
    engine = data["applications"][i]["args"]["engine"]
    engine["max_model_lenn"] = engine.pop("max_model_len")
    with pytest.raises(ConfigError) as info:
        check_serve_config(data, "serve_configs/local.yaml")
    text = str(info.value)
    assert "serve_configs/local.yaml" in text
    assert f"applications[{i}].args.engine.max_model_lenn" in text
    assert "did you mean 'max_model_len'" in text


def test_typo_in_model_source_variant_is_reported_with_its_keys() -> None:
    data = _local()
    data["applications"][_llm_index(data)]["args"]["model"]["servedname"] = "x"
    with pytest.raises(ConfigError) as info:
        check_serve_config(data, "f.yaml")
    assert "did you mean 'served_name'" in str(info.value)


def test_typo_ray_silently_accepts_is_rejected() -> None:
    data = _local()
    data["applications"][0]["deployments"][0]["num_replica"] = 2
    data["http_options"]["prot"] = 1
    ServeDeploySchema.model_validate(data)  # Ray itself lets both through
    with pytest.raises(ConfigError) as info:
        check_serve_config(data, "f.yaml")
    text = str(info.value)
    assert (
        "applications[0].deployments[0].num_replica: unknown key; did you mean 'num_replicas'"
        in text
    )
    assert "http_options.prot: unknown key; did you mean 'port'" in text


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"model": {"source": "nope"}}, "model"),
        ({"model": {"source": "local"}}, "model.local.path: Field required"),
        ({"model": {"source": "hub", "id": "not a repo id"}}, "model.hub.id"),
        ({"model": {"source": "tiny-random"}, "engine": {"max_num_seqs": 0}}, "max_num_seqs"),
        (
            {"model": {"source": "tiny-random"}, "engine": {"tensor_parallel_size": 2}},
            "tensor_parallel_size (2) needs accelerator: gpu",
        ),
        ({"model": {"source": "tiny-random"}, "accelerator": "tpu"}, "accelerator"),
    ],
)
def test_bad_args_values(args: dict, expected: str) -> None:
    data = {"applications": [{**tiny_app(), "args": args}]}
    with pytest.raises(ConfigError) as info:
        check_serve_config(data, "f.yaml")
    assert expected in str(info.value)


def test_builder_validates_args_at_deploy_time() -> None:
    from runtime.apps import build_llm_app

    with pytest.raises(ConfigError, match="did you mean 'engine'"):
        build_llm_app({"model": {"source": "tiny-random"}, "engin": {}})


def test_served_name_defaults() -> None:
    assert LLMAppConfig.model_validate({"model": {"source": "smollm2"}}).served_name == (
        "smollm2-135m-instruct"
    )
    hub = LLMAppConfig.model_validate({"model": {"source": "hub", "id": "org/name"}})
    assert hub.served_name == "org/name"
    assert hub.enforce_eager is True  # cpu default


def test_cli_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["check", str(SERVE_CONFIGS / "local.yaml")]) == 0
    bad = copy.deepcopy(_local())
    bad["applications"][_llm_index(bad)]["args"]["acelerator"] = "cpu"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    assert cli_main(["check", str(path)]) == 1
    err = capsys.readouterr().err
    assert str(path) in err and "did you mean 'accelerator'" in err


def test_missing_and_unparsable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_serve_config(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("applications: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_serve_config(broken)


def _app(config: dict, name: str) -> dict:
    return next(a for a in config["applications"] if a["name"] == name)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda c: _app(c, "gateway")["args"]["models"][0].update(app="lm"),
            "model 'smollm2-135m-instruct': no application named 'lm'",
        ),
        (
            lambda c: _app(c, "gateway")["args"].update(agent_apps=["llm"]),
            "agent_apps: application 'llm' is not built by runtime.apps:build_agent_app",
        ),
        (
            # An agent application without a router names its model's application.
            lambda c: (
                _app(c, "agents")["args"].pop("router"),
                _app(c, "agents")["args"]["agents"][0]["llm"].update(app="gatway"),
            ),
            "agent 'assistant': no application named 'gatway'",
        ),
        (
            lambda c: _app(c, "agents")["args"]["agents"][1]["llm"].update(model="gpt-9"),
            "agent 'planner': the router has no model 'gpt-9'",
        ),
        (
            lambda c: _app(c, "agents")["args"]["agents"][1]["llm"].update(app="tiny"),
            "agent 'planner': `app` and `deployment` are for applications without a `router`",
        ),
        (
            lambda c: _app(c, "agents")["args"]["router"]["models"][0].update(app="lm"),
            "application 'agents': model 'smollm2-135m-instruct': no application named 'lm'",
        ),
        (
            lambda c: _app(c, "gateway")["args"]["models"].append(
                {"name": "x", "provider": "nobody"}
            ),
            "no provider named 'nobody'",
        ),
        (
            lambda c: _app(c, "gateway")["args"]["models"][0].update(fallback=["nothing"]),
            "fallback 'nothing' is not a model",
        ),
        (
            lambda c: _app(c, "gateway")["args"]["models"][0].update(provider="p"),
            "set `app` or `provider`, not both",
        ),
    ],
)
def test_references_between_applications_are_checked(edit: object, expected: str) -> None:
    config = _local()
    edit(config)  # type: ignore[operator]
    with pytest.raises(ConfigError) as err:
        check_serve_config(config, "local.yaml")
    assert expected in str(err.value)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda c: _app(c, "llm")["deployments"][0].update(ray_actor_options={"num_cpus": 2}),
            "applications[1].deployments[0].ray_actor_options: an LLM deployment's placement",
        ),
        (
            lambda c: _app(c, "llm")["deployments"][0].update(placement_group_bundles=[{"GPU": 1}]),
            "applications[1].deployments[0].placement_group_bundles: an LLM deployment's",
        ),
        (
            lambda c: (
                _app(c, "agents")["args"].update(placement="cpu-worker"),
                _app(c, "agents")["deployments"][0].update(ray_actor_options={"num_cpus": 1}),
            ),
            "applications[2].deployments[0].ray_actor_options.label_selector: must hold "
            "`worker-kind: cpu`",
        ),
        (
            lambda c: _app(c, "gateway")["deployments"][0].update(
                ray_actor_options={"label_selector": {"worker-kind": "gpu"}}
            ),
            "applications[0].deployments[0].ray_actor_options.label_selector: "
            "`worker-kind: gpu` with the application's `args.placement: any`",
        ),
        (lambda c: _app(c, "gateway")["args"].update(placement="gpu-worker"), "placement"),
        (
            lambda c: _app(c, "llm")["args"].update(accelerator="gpu", placement="cpu-worker"),
            "placement: cpu-worker cannot run accelerator: gpu",
        ),
        (lambda c: _app(c, "llm")["args"].update(placement="gpu"), "placement"),
    ],
)
def test_placement_is_kept(edit: object, expected: str) -> None:
    """Serve replaces a builder's actor options with the config's: the check keeps LLMs'
    placement in their args, and agents' and gateways' labels as their args say."""
    config = _local()
    edit(config)  # type: ignore[operator]
    with pytest.raises(ConfigError) as err:
        check_serve_config(config, "local.yaml")
    assert expected in str(err.value)
