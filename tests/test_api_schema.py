"""Schemathesis against the OpenAPI document, in process: no 5xx, no response outside the schema."""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from test_api import settings_for
from woolguard.api import create_app
from woolguard.api.testing import tenant_with_key

_tmp = Path(tempfile.mkdtemp(prefix="wg-schemathesis-"))
app = create_app(settings_for(_tmp))
_client = TestClient(app)
_client.__enter__()  # start the service once for the whole run (closed at interpreter exit)
HEADERS = tenant_with_key(app.state.service.db, "fuzz")
schema = schemathesis.openapi.from_asgi("/openapi.json", app)
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance, content_type_conformance]


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_api_conforms(case) -> None:
    case.call_and_validate(headers=HEADERS, checks=CHECKS)
