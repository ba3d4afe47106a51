"""Rules for webhook notification channels that need neither Airflow nor a network.

* Severities and their order (:func:`at_least`): a channel gets the messages at or above its
  ``min_severity``.
* Load-time checks of the spec's webhook fields: :func:`check_conn_id`, :func:`check_endpoint` and
  :func:`refuse_secret`. A secret never goes into the spec: the host, credentials and headers of a
  webhook live in an Airflow HTTP Connection; messages name the field and never echo the secret.
* :func:`judge_answer`: whether the receiver's answer confirms the delivery (status 2xx by default,
  optionally an exact status, JSON field values and a body substring).

:mod:`gendev_release.spec` validates with these rules; :mod:`gendev_release.notify` judges with them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Literal, get_args
from urllib.parse import urlsplit

Severity = Literal["info", "warning", "critical"]
#: Every severity, lowest first.
SEVERITIES: tuple[Severity, ...] = get_args(Severity)
#: A JSON scalar a receiver's answer field is compared with.
JsonScalar = str | int | float | bool | None

#: Airflow's connection ids: letters, digits, ``_ . -`` (the env var is ``AIRFLOW_CONN_`` + the id upper-cased).
CONN_ID_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,249}$")
_SCHEME_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_USERINFO_RE = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^\s/@]*@")
CONNECTION_HINT = ("define it in the Airflow UI (Admin > Connections, type HTTP: host, port, schema, login/password, "
                   "extra headers) or as the environment variable {env} (outside a task only environment "
                   "variables and secrets backends are read)")


def at_least(severity: Severity, minimum: Severity) -> bool:
    """Whether a message of ``severity`` reaches a channel whose ``min_severity`` is ``minimum``."""
    return SEVERITIES.index(severity) >= SEVERITIES.index(minimum)


def conn_env_var(conn_id: str) -> str:
    """The environment variable Airflow reads the connection from: ``AIRFLOW_CONN_RELEASE_HOOK``."""
    return "AIRFLOW_CONN_" + conn_id.upper()


def redact_url_credentials(text: str) -> str:
    """``https://user:pw@host/x`` -> ``https://***@host/x``; any other text unchanged."""
    return _USERINFO_RE.sub(lambda m: f"{m['scheme']}***@", text)


def refuse_secret(value: str, what: str) -> str:
    """Refuse (``ValueError``) a spec value holding a secret; the message names the rule, never the secret.

    Uses the package's plaintext-secret rules (:func:`gendev_release.secrets.scan_secrets`): credentials
    in a URL, known token shapes, ``token=...`` style assignments, high-entropy strings.
    """
    from gendev_release.secrets import scan_secrets  # the scanner pulls in the report models; only needed here

    rules = list(dict.fromkeys(hit.rule for hit in scan_secrets(value, what)))
    if _USERINFO_RE.search(value) and "url_credentials" not in rules:
        rules.insert(0, "url_credentials")  # a user name alone (https://user@host) is a credential too
    if not rules:
        return value
    shown = f" ({redact_url_credentials(value)!r})" if rules == ["url_credentials"] else ""
    raise ValueError(f"{what} holds a secret{shown}: {', '.join(rules)}; secrets never go in the spec: put the "
                     "URL, credentials and headers in the Airflow HTTP connection named by conn_id (login/password, "
                     "or extra such as {\"Authorization\": \"Bearer ...\"}) and keep only the path here")


def check_conn_id(value: str) -> str:
    """An Airflow connection id, not a URL; :class:`ValueError` says how to define the connection."""
    if _SCHEME_RE.match(value) or "@" in value or "/" in value:
        raise ValueError(f"conn_id {redact_url_credentials(value)!r} is a URL; give the id of an Airflow HTTP "
                         "connection that holds the URL and its credentials (e.g. release_webhook), and "
                         + CONNECTION_HINT.format(env="AIRFLOW_CONN_RELEASE_WEBHOOK"))
    if not CONN_ID_RE.match(value):
        raise ValueError(f"conn_id {value[:80]!r} is not an Airflow connection id; use letters, digits, '_', '.' "
                         "and '-' (at most 250), e.g. release_webhook")
    return value


def check_endpoint(value: str) -> str:
    """A path (and query) on the connection's host, never a URL and never a secret.

    ``""`` posts to the connection's URL as it is.
    """
    if _SCHEME_RE.match(value.strip()):
        refuse_secret(value, "endpoint")  # a URL with credentials: say so first
        parts = urlsplit(value.strip())
        raise ValueError(f"endpoint {value[:120]!r} is a URL; give only the path (e.g. {parts.path or '/hooks'!r}) "
                         f"and put the scheme and host ({parts.scheme}://{parts.hostname}) in the Airflow "
                         "connection named by conn_id")
    if any(c.isspace() or ord(c) < 32 for c in value):
        raise ValueError(f"endpoint {value[:120]!r} contains a space or control character; give a URL path")
    if "#" in value:
        raise ValueError(f"endpoint {value[:120]!r} has a fragment ('#'); give a URL path")
    return refuse_secret(value, "endpoint")


# ----------------------------------------------------------------------------- the receiver's answer
@dataclass(frozen=True)
class AnswerProblem:
    """Why an answer does not confirm the delivery: which spec field it contradicts and how."""

    field: Literal["endpoint", "expect_status", "expect_json", "expect_body_contains"]
    reason: Literal["http_status", "unexpected_answer"]
    message: str


def _json_at(document: object, path: str) -> tuple[bool, object]:
    """``(found, value)`` at a dotted ``path`` (``result.status``, ``items.0.id``) of a parsed JSON answer."""
    value = document
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return False, None
    return True, value


def _same(actual: object, expected: JsonScalar) -> bool:
    """JSON equality without Python's ``True == 1``: a boolean matches only a boolean."""
    if isinstance(actual, bool) or isinstance(expected, bool):
        return isinstance(actual, bool) and isinstance(expected, bool) and actual == expected
    return actual == expected


def judge_answer(status: int, body: bytes, *, expect_status: int | None = None,
                 expect_json: dict[str, JsonScalar] | None = None,
                 expect_body_contains: str | None = None) -> AnswerProblem | None:
    """``None`` when the answer confirms the delivery, else what is wrong with it.

    :param status: the HTTP status of the answer.
    :param body: the answer's body.
    :param expect_status: the exact status required; ``None``: any 2xx.
    :param expect_json: dotted field -> value the answer's JSON must hold (``{"ok": true}``).
    :param expect_body_contains: a text the answer's body must contain.
    """
    if expect_status is None and not 200 <= status < 300:
        return AnswerProblem("endpoint", "http_status", f"the receiver answered HTTP {status} (expected 2xx)")
    if expect_status is not None and status != expect_status:
        return AnswerProblem("expect_status", "http_status",
                             f"the receiver answered HTTP {status} (expected {expect_status})")
    text = body.decode("utf-8", errors="replace")
    if expect_json:
        try:
            document = json.loads(text)
        except ValueError:
            return AnswerProblem("expect_json", "unexpected_answer",
                                 f"the answer ({len(body)} bytes) is not JSON; expected {json.dumps(expect_json)}")
        for path, expected in expect_json.items():
            found, actual = _json_at(document, path)
            if not found:
                return AnswerProblem("expect_json", "unexpected_answer", f"the answer has no field {path!r}")
            if not _same(actual, expected):
                shown = json.dumps(actual, default=str)
                shown = shown if len(shown) <= 80 else shown[:80] + "..."
                return AnswerProblem("expect_json", "unexpected_answer",
                                     f"the answer's {path!r} is {shown}, expected {json.dumps(expected)}")
    if expect_body_contains is not None and expect_body_contains not in text:
        return AnswerProblem("expect_body_contains", "unexpected_answer",
                             f"the answer ({len(body)} bytes) does not contain {expect_body_contains!r}")
    return None
