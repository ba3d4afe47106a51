"""docker-compose.yml cannot run here (no Docker engine): check it as far as the machine allows."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
AIRFLOW_SERVICES = {"airflow-init", "api-server", "scheduler", "dag-processor", "triggerer", "worker"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_services_of_the_production_shape(compose: dict) -> None:
    assert set(compose["services"]) == AIRFLOW_SERVICES | {"postgres", "redis"}
    for name in AIRFLOW_SERVICES:
        env = compose["services"][name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
        assert "@postgres:5432/" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:6379")
        assert env["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/gendev/dags"
        # Workers notice a deferral within 1 s, so a trigger's 3 s hold outlasts it (sensors/triggers.py).
        assert env["AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL"] == "1"
        assert compose["services"][name]["build"] == "."


def test_airflow_waits_for_healthy_backends_and_migrations(compose: dict) -> None:
    for name in AIRFLOW_SERVICES - {"airflow-init"}:
        depends = compose["services"][name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy"
        assert depends["redis"]["condition"] == "service_healthy"
        assert depends["airflow-init"]["condition"] == "service_completed_successfully"


def test_image_pins_the_same_airflow_line_and_installs_the_celery_extra() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    pyproject = (REPO / "pyproject.toml").read_text()
    image = re.search(r"FROM apache/airflow:(\d+\.\d+)\.\d+", dockerfile)
    pinned = re.search(r'"apache-airflow>=(\d+\.\d+)\.\d+,<', pyproject)
    assert image and pinned and image.group(1) == pinned.group(1) == "3.3"
    assert '"/opt/gendev[celery]"' in dockerfile
    assert "apache-airflow-providers-celery" in pyproject


@pytest.mark.parametrize("service", ["airflow-init", "api-server", "scheduler", "dag-processor", "triggerer"])
def test_commands_are_real_airflow_commands(compose: dict, service: str) -> None:
    command = compose["services"][service]["command"]
    airflow = Path(sys.executable).with_name("airflow")
    result = subprocess.run([str(airflow), *command, "--help"], capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr[-2000:]


def test_worker_runs_the_celery_worker(compose: dict) -> None:
    # The celery provider is only in the image (extra "celery"); the command is checked by shape.
    assert compose["services"]["worker"]["command"] == ["celery", "worker"]
