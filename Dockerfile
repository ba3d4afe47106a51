# Production image: Airflow 3.3 with gendev-release installed (plugin via entry point, DAGs in /opt/gendev/dags).
FROM apache/airflow:3.3.2-python3.11
USER root
RUN apt-get update && apt-get install -y --no-install-recommends git && rm -rf /var/lib/apt/lists/*
USER airflow
COPY --chown=airflow:root . /opt/gendev
RUN pip install --no-cache-dir "/opt/gendev[celery]"
ENV AIRFLOW__CORE__DAGS_FOLDER=/opt/gendev/dags
