"""Deferred waits and their triggers: health, observation windows, metric sampling and the change window.

The decisions live in :mod:`gendev_release.gates` (shared with the synchronous paths); the
triggers in :mod:`gendev_release.sensors.triggers`; the typed events in
:mod:`gendev_release.sensors.events`.
"""

from __future__ import annotations

from gendev_release.sensors.change_window import ChangeWindowGateOperator
from gendev_release.sensors.health import HealthCheckSensor
from gendev_release.sensors.observation import MetricSamplingOperator, ObservationWindowOperator
from gendev_release.sensors.triggers import (
    ChangeWindowTrigger,
    HealthCheckTrigger,
    MetricSamplingTrigger,
    ObservationWindowTrigger,
)

__all__ = ["ChangeWindowGateOperator", "ChangeWindowTrigger", "HealthCheckSensor", "HealthCheckTrigger",
           "MetricSamplingOperator", "MetricSamplingTrigger", "ObservationWindowOperator", "ObservationWindowTrigger"]
