"""Version floors: one set of numbers in pyproject.toml, .ci/floors.txt and llm_ner.versions, and a
clear error naming the package below its floor before any model loads."""

import re
from pathlib import Path

import pytest
import tomllib

from llm_ner.versions import FLOORS, DependencyVersionError, check_versions

ROOT = Path(__file__).resolve().parent.parent


def test_floors_agree_in_pyproject_ci_and_code():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [spec for specs in project["optional-dependencies"].values() for spec in specs]
    dependencies = project["dependencies"] + extras  # ray's floor lives in the ray extra
    lower = {}
    for spec in dependencies:
        match = re.match(r"([A-Za-z0-9_.-]+)(?:\[[a-z,]+\])?>=([0-9.]+)", spec)
        if match:
            lower[match[1]] = match[2]
    pinned = dict(line.split("==") for line in (ROOT / ".ci" / "floors.txt").read_text().splitlines() if "==" in line)
    for name, floor in FLOORS.items():
        assert lower[name] == floor, f"pyproject.toml floor of {name}"
        assert pinned[name] == floor, f".ci/floors.txt pin of {name}"
    assert set(pinned) == set(FLOORS)
    for spec in dependencies:  # every library with a floor also has a ceiling
        if ">=" in spec and spec.split(">=")[0].split("[")[0] in FLOORS:
            assert ",<" in spec, spec


def test_installed_versions_pass():
    check_versions()


def test_old_versions_are_named_with_their_floor():
    installed = {name: floor for name, floor in FLOORS.items()}
    check_versions(installed=installed)  # exactly the floor is fine
    installed.update(transformers="5.1.0", trl="1.7.1")
    with pytest.raises(DependencyVersionError) as error:
        check_versions(installed=installed)
    message = str(error.value)
    assert "transformers 5.1.0 is older than llm-ner's floor 5.2.0" in message
    assert "trl 1.7.1 is older than llm-ner's floor 1.8.0" in message
    assert "peft" not in message.split("Upgrade")[0]
    assert "'transformers>=5.2.0'" in message and "'trl>=1.8.0'" in message
    with pytest.raises(DependencyVersionError, match="datasets is not installed"):
        check_versions(["datasets"], installed={})


def test_training_refuses_old_transformers_before_loading(monkeypatch, tmp_path):
    import llm_ner.versions as versions
    from llm_ner.training import NERDataArguments, train

    monkeypatch.setattr(versions, "version", lambda name: "5.1.0" if name == "transformers" else FLOORS[name])
    with pytest.raises(DependencyVersionError, match="transformers 5.1.0"):
        train(NERDataArguments(train_file=str(tmp_path / "missing.json")), None, None)


def test_an_old_library_is_one_line_not_a_traceback():
    from llm_ner.errors import user_facing_error

    try:
        check_versions(["transformers"], installed={"transformers": "5.1.0"})
    except DependencyVersionError as exc:
        code, message = user_facing_error(exc)
    assert code == 1 and message.startswith("transformers 5.1.0 is older")
