"""Deferrable sensors and their triggers (health checks today; approvals and change windows later)."""

from __future__ import annotations

from gendev_release.sensors.health import HealthCheckSensor, HealthGate
from gendev_release.sensors.triggers import HealthCheckTrigger

__all__ = ["HealthCheckSensor", "HealthCheckTrigger", "HealthGate"]
