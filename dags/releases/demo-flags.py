"""Airflow DAG of the release spec beside this file (same name, .yaml or .yml).

Written by `gendev-release dagfile`; it holds no data: the spec is found by this file's name.
An invalid spec becomes this file's import error (naming the spec file and field); every other
release keeps its DAG.
"""

from gendev_release.dagfile import release_dag

dag = release_dag(__file__)
