"""The Airflow plugin of gendev-release (registered through the ``airflow.plugins`` entry point)."""
