"""The OpenAPI document and the service agree: what the schema calls valid the service
accepts, what it calls invalid the service refuses with a documented error, and neither
ever answers 5xx. Schemathesis checks this over generated requests against a real
`signer serve`; the tests before it pin the cases it first found (whole-number floats,
room_id/room_str, path parameters) and duplicate keys, which no schema can express.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import jsonschema_rs
import pytest
from aiohttp.test_utils import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from signer.core import UINT32_MAX
from signer.service import openapi
from signer.service.handlers import duplicate_key
from signer.service.routes import ROUTES
from tests.service.conftest import API_KEY, V1_APP, V2_APP, Deployment
from tests.service.test_process import serve

EVICT_PATH = "/v1/usersig/{sdkappid}/{userid}"
HOOKS = Path(__file__).with_name("schemathesis_hooks.py")
# The suite's run: deterministic (derandomized), and at least 1,000 requests in all. For a
# longer one set SIGNER_CONTRACT_EXAMPLES (per operation) and, to explore beyond the fixed
# examples, SIGNER_CONTRACT_SEED (seeded random generation instead of derandomized).
CONTRACT_EXAMPLES = int(os.environ.get("SIGNER_CONTRACT_EXAMPLES", "150"))
CONTRACT_SEED = os.environ.get("SIGNER_CONTRACT_SEED", "")
MIN_REQUESTS = 1000
SCHEMATHESIS_TIMEOUT = float(os.environ.get("SIGNER_CONTRACT_TIMEOUT", "600"))


def _spec() -> dict[str, Any]:
    return openapi.build_spec(ROUTES)


def _component(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = _spec()["components"]["schemas"][name]
    return schema


def _validator(schema: dict[str, Any]) -> jsonschema_rs.Draft202012Validator:
    """A validator reading ``pattern`` as ECMA-262 does, like schemathesis and JavaScript
    clients; Python's ``re`` would let ``$`` match before a final newline."""
    return jsonschema_rs.Draft202012Validator({**schema, "components": _spec()["components"]})


def _is_valid(model: str, body: Any) -> bool:
    return _validator({"$ref": f"#/components/schemas/{model}"}).is_valid(body)


async def _post(
    client: TestClient, deployment: Deployment, path: str, body: Any
) -> tuple[int, dict[str, Any]]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = await client.post(
        path,
        data=raw,
        headers={**deployment.headers(), "Content-Type": "application/json"},
    )
    return response.status, await response.json()


class TestWholeNumbers:
    """JSON has one number type and JSON Schema's "integer" is any number whose value is
    whole, so 13128.0 is the integer 13128; 13128.5, true and "13128" are not integers."""

    @pytest.mark.parametrize(
        ("model", "field"),
        [
            ("UserSigRequest", "sdkappid"),
            ("UserSigRequest", "expire"),
            ("BatchRequest", "sdkappid"),
            ("PrivateMapKeyRequest", "room_id"),
            ("PrivateMapKeyRequest", "privilege"),
            ("VerifyRequest", "now"),
        ],
    )
    def test_integer_fields_have_a_format_and_bounds(self, model: str, field: str) -> None:
        """Every integer field says its format and both bounds."""
        schema = _component(model)["properties"][field]
        branch = next(s for s in schema.get("anyOf", [schema]) if s.get("type") == "integer")
        assert branch["format"] in {"int32", "int64"}
        assert {"minimum", "maximum"} <= set(branch)

    async def test_whole_number_floats_are_accepted(
        self, client: TestClient, deployment: Deployment
    ) -> None:
        """sdkappid 1400000002.0 and expire 600.0 are the integers the schema allows."""
        body = {"sdkappid": float(V2_APP), "userid": "alice", "expire": 600.0}
        assert _is_valid("UserSigRequest", body)
        status, data = await _post(client, deployment, "/v1/usersig", body)
        assert status == 200, data
        assert data["sdkappid"] == V2_APP and data["expires_at"] - data["issued_at"] == 600
        status, data = await _post(
            client,
            deployment,
            "/v1/privatemapkey",
            {"sdkappid": float(V1_APP), "userid": "alice", "room_id": 1234.0, "privilege": 1e0},
        )
        assert status == 200, data
        status, data = await _post(
            client, deployment, "/v1/usersig/batch", {"sdkappid": float(V2_APP), "userids": ["a"]}
        )
        assert status == 200, data

    @pytest.mark.parametrize(
        "value",
        [13128.5, True, "1400000002", UINT32_MAX + 1.0, 0.0, -1.0],
        ids=["fraction", "boolean", "string", "above", "zero", "negative"],
    )
    async def test_other_values_are_refused_as_the_schema_says(
        self, client: TestClient, deployment: Deployment, value: object
    ) -> None:
        """Fractions, booleans, strings and out-of-range whole numbers: 422 on sdkappid."""
        body = {"sdkappid": value, "userid": "alice"}
        assert not _is_valid("UserSigRequest", body)
        status, data = await _post(client, deployment, "/v1/usersig", body)
        assert status == 422, data
        assert data["error"]["field"] == "sdkappid"

    async def test_a_fractional_expire_is_refused(
        self, client: TestClient, deployment: Deployment
    ) -> None:
        """expire 600.5 is not a whole number of seconds."""
        body = {"sdkappid": V2_APP, "userid": "alice", "expire": 600.5}
        assert not _is_valid("UserSigRequest", body)
        status, data = await _post(client, deployment, "/v1/usersig", body)
        assert (status, data["error"]["field"]) == (422, "expire")


class TestRoomIdOrRoomStr:
    """A PrivateMapKey names its room by number or by string: exactly one of the two."""

    def test_the_schema_says_exactly_one(self) -> None:
        """The request schema carries the rule as a oneOf of the two non-null fields."""
        assert _component("PrivateMapKeyRequest")["oneOf"] == [
            {"required": ["room_id"], "properties": {"room_id": {"type": "integer"}}},
            {"required": ["room_str"], "properties": {"room_str": {"type": "string"}}},
        ]

    @pytest.mark.parametrize(
        ("rooms", "valid"),
        [
            ({"room_id": 1234}, True),
            ({"room_str": "lobby"}, True),
            ({"room_id": 1234, "room_str": None}, True),
            ({"room_id": None, "room_str": "lobby"}, True),
            ({}, False),
            ({"room_id": None, "room_str": None}, False),
            ({"room_id": None}, False),
            ({"room_id": 1234, "room_str": "lobby"}, False),
        ],
        ids=repr,
    )
    async def test_schema_and_service_agree(
        self, client: TestClient, deployment: Deployment, rooms: dict[str, Any], valid: bool
    ) -> None:
        """Whatever the schema accepts is signed; whatever it refuses is a 422."""
        body = {"sdkappid": V1_APP, "userid": "alice", **rooms}
        assert _is_valid("PrivateMapKeyRequest", body) is valid
        status, data = await _post(client, deployment, "/v1/privatemapkey", body)
        assert status == (200 if valid else 422), data


class TestUserbuf:
    """userbuf is standard base64 by one rule, the same pattern in schema and service."""

    @pytest.mark.parametrize("userbuf", ["", "AAEC", "AA==", "AAA=", "AAAA=", "A", "AAEC\n", "é"])
    async def test_schema_and_service_agree(
        self, client: TestClient, deployment: Deployment, userbuf: str
    ) -> None:
        """Accepted by both, or refused by both (422 on userbuf)."""
        body = {"sdkappid": V2_APP, "userid": "alice", "userbuf": userbuf}
        status, data = await _post(client, deployment, "/v1/usersig", body)
        if _is_valid("UserSigRequest", body):
            assert status == 200, data
        else:
            assert (status, data["error"]["field"]) == (422, "userbuf")


class TestPathParameters:
    """DELETE /v1/usersig/{sdkappid}/{userid} documents what its path segments may be."""

    def _parameters(self) -> dict[str, dict[str, Any]]:
        operation = _spec()["paths"][EVICT_PATH]["delete"]
        return {p["name"]: p for p in operation["parameters"]}

    def test_sdkappid_is_a_bounded_integer(self) -> None:
        """sdkappid is the same integer as in the bodies, 1..4294967295."""
        parameter = self._parameters()["sdkappid"]
        assert (parameter["in"], parameter["required"]) == ("path", True)
        assert parameter["schema"] == _component("UserSigRequest")["properties"]["sdkappid"]
        assert (parameter["schema"]["minimum"], parameter["schema"]["maximum"]) == (1, UINT32_MAX)

    def test_userid_is_a_bounded_string_without_control_characters(self) -> None:
        """userid has the bounds and the pattern of the body's userid."""
        schema = self._parameters()["userid"]["schema"]
        assert schema == _component("UserSigRequest")["properties"]["userid"]
        assert (schema["type"], schema["minLength"], schema["maxLength"]) == ("string", 1, 1024)
        validator = _validator(schema)
        assert validator.is_valid("alice") and validator.is_valid("中文/ü")
        for bad in ("", "a\nb", "a\n", "a\x7f", "a\x85", "a\u2028", "a" * 1025):
            assert not validator.is_valid(bad), bad


@pytest.mark.processes
class TestLongestUrls:
    """A schema-valid userid (up to 1024 characters) fits in a GET or DELETE URL."""

    def test_a_userid_too_long_in_bytes_is_the_policys_422(
        self, deployment: Deployment, tmp_path: Path
    ) -> None:
        """1024 four-byte characters: the userid policy's 422, not a protocol error."""
        userid = quote("\U00010000" * 1024)
        config = _contract_config(deployment)
        with serve(tmp_path, "--config", str(config)) as server:
            headers = deployment.headers()
            answers = [
                httpx.get(
                    f"{server.url}/v1/usersig?sdkappid={V1_APP}&userid={userid}", headers=headers
                ),
                httpx.delete(f"{server.url}/v1/usersig/{V1_APP}/{userid}", headers=headers),
            ]
        for answer in answers:
            assert (answer.status_code, answer.json()["error"]["code"]) == (
                422,
                "invalid_userid",
            ), answer.text


class TestDuplicateKeys:
    """A key given twice is refused as malformed JSON naming the key: parsers disagree on
    which one wins (orjson keeps the last, Tencent's C++ verifier the first)."""

    @pytest.mark.parametrize(
        ("path", "raw", "key"),
        [
            (
                "/v1/usersig",
                b'{"sdkappid": %d, "sdkappid": %d, "userid": "alice"}' % (V1_APP, V2_APP),
                "sdkappid",
            ),
            (
                "/v1/usersig",
                b'{"sdkappid": %d, "\\u0073dkappid": %d, "userid": "alice"}' % (V1_APP, V2_APP),
                "sdkappid",
            ),
            (
                "/v1/usersig",
                b'{"sdkappid": %d, "userid": "alice", "user\\u0069d": "bob"}' % V2_APP,
                "userid",
            ),
            (
                "/v1/usersig/batch",
                b'{"sdkappid": %d, "userids": ["a"], "userids": ["b"]}' % V2_APP,
                "userids",
            ),
            (
                "/v1/usersig",
                b'{"sdkappid": %d, "userid": "alice", "userbuf": {"x": 1, "x": 2}}' % V2_APP,
                "x",
            ),
        ],
        ids=["plain", "u-escape", "u-escape-second", "batch", "nested"],
    )
    async def test_a_repeated_key_is_400_naming_it(
        self, client: TestClient, deployment: Deployment, path: str, raw: bytes, key: str
    ) -> None:
        """Whether spelt the same or with \\u escapes, at the top or nested."""
        status, data = await _post(client, deployment, path, raw)
        assert status == 400, data
        assert data["error"]["code"] == "malformed_json"
        assert repr(key) in data["error"]["message"]

    @pytest.mark.parametrize(
        "raw",
        [
            b'{"userid": "sdkappid", "sdkappid": %d}' % V2_APP,
            b'{"sdkappid": %d, "userid": "al\\u0069ce"}' % V2_APP,
            b'{"sdkappid": %d, "userid": "\\"sdkappid\\""}' % V2_APP,
            b'{"sdkappid": %d, "userid": "{\\"userid\\": 1}"}' % V2_APP,
        ],
        ids=["value-equals-a-key", "escaped-value", "quoted-key-as-value", "json-in-a-value"],
    )
    async def test_lookalikes_are_not_duplicates(
        self, client: TestClient, deployment: Deployment, raw: bytes
    ) -> None:
        """A string value spelt like a key, escapes and braces inside strings are fine."""
        status, data = await _post(client, deployment, "/v1/usersig", raw)
        assert status in (200, 422), data  # 422: the quoted userid breaks the policy
        if status == 422:
            assert data["error"]["code"] == "invalid_userid"

    async def test_a_body_too_deep_for_the_exact_check_is_400(
        self, client: TestClient, deployment: Deployment
    ) -> None:
        """orjson takes 1,000 levels, the stdlib's parser may not: 400, never a 500."""
        raw = b'{"sdkappid": %d, "userid": "\\u0061", "x": %s%s}' % (
            V2_APP,
            b"[" * 1000,
            b"]" * 1000,
        )
        status, data = await _post(client, deployment, "/v1/usersig", raw)
        assert status in (400, 422), data  # 422: the stdlib coped, and "x" is no field
        assert data["error"]["code"] in ("malformed_json", "invalid_field")

    @given(
        st.lists(
            st.tuples(
                st.sampled_from(["a", "b", "ab", '"', "\\", "é", "😀", "{", ":", ",", " "]),
                st.recursive(
                    st.none() | st.integers() | st.text(alphabet='ab"\\{},: é'),
                    lambda inner: st.lists(inner, max_size=3),
                    max_leaves=5,
                ),
            ),
            max_size=5,
        ),
        st.booleans(),
        st.booleans(),
    )
    @settings(max_examples=300, deadline=None)
    def test_the_fast_check_is_exact(
        self, pairs: list[tuple[str, Any]], ensure_ascii: bool, nest: bool
    ) -> None:
        """duplicate_key finds a repeated key exactly when there is one, however spelt."""

        def dump(value: Any) -> str:
            return json.dumps(value, ensure_ascii=ensure_ascii)

        members = ", ".join(f"{dump(k)}: {dump(v)}" for k, v in pairs)
        text = "{" + members + "}"
        if nest:
            text = '{"outer": ' + text + "}"
        raw = text.encode()
        data = json.loads(raw)
        keys = [k for k, _ in pairs]
        repeated = {k for k in keys if keys.count(k) > 1}
        found = duplicate_key(raw, data)
        if repeated:
            assert found in repeated
        else:
            assert found is None


def _contract_config(deployment: Deployment) -> Path:
    """The deployment's keys, with every per-app limit at the widest the schema states
    (expire 1..4294967295 s, userids of 1024 bytes, batches of 100,000), so that schema
    and service differ only where JSON Schema cannot follow (schemathesis_hooks.py)."""
    wide = f"min_expire = 1\nmax_expire = {UINT32_MAX}\nmax_userid_bytes = 1024\n"
    config = deployment.directory / "contract.toml"
    config.write_text(
        f"""
[server]
max_body_bytes = 1048576
max_batch_userids = 100000

[engine]
workers = 1
max_queued = 100000

[rate_limit]
rate = 1000000
burst = 1000000

[[apps]]
sdkappid = {V1_APP}
algorithm = "v1"
private_key_file = "keys/app1/private_key"
{wide}
[[apps]]
sdkappid = {V2_APP}
algorithm = "v2"
secret_file = "keys/app2/secret"
{wide}
[[callers]]
name = "app-servers"
api_key_file = "keys/callers/app-servers"
sdkappids = [{V1_APP}, {V2_APP}]
"""
    )
    return config


def _responses(report: Path) -> Counter[tuple[str, int]]:
    """(operation, status) of every response in a schemathesis NDJSON report."""
    seen: Counter[tuple[str, int]] = Counter()
    for line in report.read_text().splitlines():
        event = json.loads(line)
        finished = event.get("ScenarioFinished")
        if finished is None:
            continue
        recorder = finished["recorder"]
        for interaction in recorder.get("interactions", {}).values():
            if interaction.get("response") is not None:
                seen[recorder["label"], interaction["response"]["status_code"]] += 1
    return seen


@pytest.mark.processes
class TestSchemathesis:
    """Requests generated from /openapi.json, valid and invalid, against a real `signer
    serve`: every check schemathesis has passes, and nothing answers 5xx."""

    def test_generated_requests_pass_every_check(
        self, deployment: Deployment, tmp_path: Path
    ) -> None:
        """At least 1,000 requests, derandomized; each operation is reached and signs."""
        config = _contract_config(deployment)
        generation = ["--seed", CONTRACT_SEED] if CONTRACT_SEED else ["--generation-deterministic"]
        reports = tmp_path / "reports"
        with serve(tmp_path, "--config", str(config)) as server:
            command = [
                str(Path(sys.executable).with_name("schemathesis")),
                "run",
                f"{server.url}/openapi.json",
                "--header",
                f"Authorization: Bearer {API_KEY}",
                "--checks",
                "all",
                "--exclude-checks",
                "positive_data_acceptance",  # narrowed in schemathesis_hooks.py
                "--max-examples",
                str(CONTRACT_EXAMPLES),
                *generation,
                "--workers",
                "1",
                "--no-color",
                "--report",
                "ndjson",
                "--report-dir",
                str(reports),
            ]
            env = {
                **os.environ,
                "SCHEMATHESIS_HOOKS": str(HOOKS),
                "SIGNER_CONTRACT_APPS": f"{V1_APP},{V2_APP}",
            }
            result = subprocess.run(
                command,
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=SCHEMATHESIS_TIMEOUT,
            )
            log = server.log()
        output = result.stdout[-20000:] + result.stderr[-5000:]
        assert result.returncode == 0, output
        assert "Traceback" not in log, log[-5000:]
        responses = _responses(next(reports.glob("*.ndjson")))
        assert sum(responses.values()) >= MIN_REQUESTS, (sum(responses.values()), output)
        assert not [key for key in responses if key[1] >= 500], responses
        operations = {f"{route.method} {openapi.openapi_path(route.path)}" for route in ROUTES}
        signed = {label for (label, status) in responses if status == 200}
        assert signed == operations, operations - signed
