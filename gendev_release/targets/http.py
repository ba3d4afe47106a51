"""The ``http`` target: a deploy API called through providers-http's ``HttpHook`` and an Airflow Connection.

``target: {kind: http, conn_id: deploy_api, endpoint: /api/v1/services/demo}``. The API's host,
credentials and headers live in the Airflow HTTP connection named by ``conn_id`` (Airflow UI, or
``AIRFLOW_CONN_DEPLOY_API``); the spec holds no URL and no secret. The calls, relative to
``endpoint``:

=================================  =============================================================
``POST /revisions``                ``{"service", "version", "revision"}`` (the id the target
                                   proposes) -> 2xx ``{"revision", "version"}`` (the id the API
                                   uses, which may differ)
``PUT /weights``                   ``{"weights": {"r1": 90, "r2": 10}}`` (``{}``: no traffic) -> 2xx
``GET /status``                    200, the status JSON of :mod:`gendev_release.targets.remote`
``DELETE /revisions/<revision>``   2xx, or 404 when it is already gone
=================================  =============================================================

Like the webhook channel (:func:`gendev_release.notify.send_webhook`), the connection's own
response check is off (answers are judged here) and redirects are not followed (they would carry
the connection's credentials to another host). Messages never hold the connection's URL or
credentials. After every change the status is read back and must show what was asked.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gendev_release.errors import TargetError
from gendev_release.spec import HttpTargetSpec
from gendev_release.spec_rules import check_version
from gendev_release.targets.remote import RemoteTarget, ReportedStatus, parse_status
from gendev_release.targets.state import RevisionRecord, TargetState, check_revision
from gendev_release.webhook_rules import CONNECTION_HINT, conn_env_var

ANSWER_SHOWN = 300


def connection_call(conn_id: str, field: str, endpoint: str, method: str, payload: dict[str, Any] | None,
                    timeout: float, service: str) -> tuple[int, bytes]:
    """One JSON request through providers-http's ``HttpHook`` and the Airflow connection ``conn_id``.

    :param field: the spec field naming the connection, for the messages.
    :param service: what answers (``the deploy API``, ``the flag service``), for the messages.
    :raises TargetError: the connection is missing or has no host, or no answer came (the message
        names the connection, never its URL or credentials).
    """
    import requests
    from airflow.providers.http.hooks.http import HttpHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    hook = HttpHook(method=method, http_conn_id=conn_id)
    try:
        connection = hook.get_connection(conn_id)
    except AirflowNotFoundException:
        raise TargetError(f"{field}: Airflow connection {conn_id!r} is not defined; "
                          + CONNECTION_HINT.format(env=conn_env_var(conn_id))) from None
    except Exception as exc:  # a secrets backend or the Execution API failing
        raise TargetError(f"{field}: Airflow connection {conn_id!r} could not be looked up "
                          f"({type(exc).__name__})") from None
    if not connection.host:
        raise TargetError(f"{field}: Airflow connection {conn_id!r} has no host; set its host (and port, schema) to "
                          f"{service}'s, e.g. " + CONNECTION_HINT.format(env=conn_env_var(conn_id)))
    what = f"{method} {endpoint} through connection {conn_id!r}"
    options = {"timeout": timeout, "check_response": False, "allow_redirects": False}
    try:
        response = hook.run(endpoint, headers={"Accept": "application/json"}, extra_options=options,
                            **({"json": payload} if payload is not None else {}))
    except requests.Timeout:
        raise TargetError(f"{what}: no answer within {timeout:g} s") from None
    except requests.ConnectionError:
        raise TargetError(f"{what}: could not connect to {service}") from None
    except Exception as exc:  # requests' InvalidURL and the like; the text may hold the URL, so only the type
        raise TargetError(f"{what}: the request could not be sent ({type(exc).__name__})") from None
    with response:
        return int(response.status_code), bytes(response.content)


class HttpTarget(RemoteTarget):
    """Revisions deployed, weighted and retired through a deploy API; its status is the truth."""

    kind = "http"
    spec: HttpTargetSpec

    def __init__(self, spec: HttpTargetSpec, service: str, home: Path) -> None:
        super().__init__(spec, service, home)

    def call(self, method: str, path: str, payload: dict[str, Any] | None = None) -> tuple[int, bytes]:
        """One request to the API through the connection: ``(status, body)`` (see :func:`connection_call`)."""
        return connection_call(self.spec.conn_id, "target.conn_id", self.spec.endpoint.rstrip("/") + path, method,
                               payload, float(self.spec.timeout_seconds), "the deploy API")

    def _expect(self, method: str, path: str, status: int, body: bytes, ok: tuple[int, ...] = ()) -> None:
        if 200 <= status < 300 or status in ok:
            return
        shown = body[:ANSWER_SHOWN].decode(errors="replace")
        raise TargetError(f"the deploy API answered {method} {self.spec.endpoint.rstrip('/')}{path} with HTTP "
                          f"{status}: {shown!r}")

    # ---------------------------------------------------------------------------- platform calls
    def read_status(self) -> ReportedStatus:
        status, body = self.call("GET", "/status")
        self._expect("GET", "/status", status, body)
        return parse_status(body, f"the deploy API's GET {self.spec.endpoint.rstrip('/')}/status")

    def deploy_call(self, revision: str, version: str) -> tuple[str, dict[str, Any]]:
        status, body = self.call("POST", "/revisions", {"service": self.service, "version": version,
                                                        "revision": revision})
        self._expect("POST", "/revisions", status, body)
        try:
            answer = json.loads(body)
        except ValueError:
            raise TargetError(f"the deploy API's answer to POST /revisions is not JSON: {body[:200]!r}") from None
        if not isinstance(answer, dict):
            raise TargetError("the deploy API's answer to POST /revisions is not a JSON object")
        used = check_revision(answer.get("revision"), "the deploy API's revision")
        try:
            said_version = check_version(answer.get("version"))
        except ValueError as exc:
            raise TargetError(f"the deploy API's answer to POST /revisions has no valid version: {exc}") from None
        if said_version != version:
            raise TargetError(f"the deploy API deployed version {said_version} as {used}, but {version} was asked")
        return used, {"http_status": status, "answer": answer}

    def weights_call(self, state: TargetState, weights: dict[str, int], action: str) -> dict[str, Any]:
        status, body = self.call("PUT", "/weights", {"weights": weights})
        self._expect("PUT", "/weights", status, body)
        return {"http_status": status}

    def retire_call(self, record: RevisionRecord) -> str | None:
        path = f"/revisions/{check_revision(record.slot)}"
        status, body = self.call("DELETE", path)
        self._expect("DELETE", path, status, body, ok=(404,))
        return f"retired through the deploy API (HTTP {status})"

    def plan_detail(self, version: str) -> dict[str, Any]:
        return {"call": f"POST {self.spec.endpoint.rstrip('/')}/revisions", "conn_id": self.spec.conn_id}
