"""Property-based fuzzing of /v1 and /api: arbitrary JSON bodies never give a 500 or hang."""

from __future__ import annotations

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.server.conftest import LiveServer

ENDPOINTS = [
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/responses",
    "/v1/conversations",
    "/api/generate",
    "/api/chat",
    "/api/embed",
    "/api/embeddings",
    "/api/show",
    "/api/copy",
]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
messages = st.lists(
    st.fixed_dictionaries(
        {
            "role": st.sampled_from(["user", "system", "assistant", "tool", "bogus"]),
            "content": st.one_of(st.text(max_size=20), st.none(), json_values),
        }
    ),
    max_size=3,
)
known_fields = st.fixed_dictionaries(
    {},
    optional={
        "model": st.sampled_from(["smollm2", "missing", "too-long", "busy", ""])
        | st.text(max_size=8),
        "messages": messages | json_values,
        "prompt": st.text(max_size=20) | st.lists(st.text(max_size=5), max_size=3) | json_values,
        "input": st.text(max_size=10) | st.lists(st.text(max_size=5), max_size=3) | json_values,
        "stream": st.booleans() | json_values,
        "temperature": st.floats(-3, 5, allow_nan=False) | json_values,
        "max_tokens": st.integers(-5, 10**6),
        "n": st.integers(-1, 20),
        "stop": st.text(max_size=5) | st.lists(st.text(max_size=3), max_size=20),
        "logit_bias": st.dictionaries(
            st.text(max_size=4), st.floats(-200, 200, allow_nan=False), max_size=3
        ),
        "options": st.dictionaries(
            st.sampled_from(["num_predict", "temperature", "top_p", "top_k", "stop", "seed"]),
            json_values,
            max_size=3,
        ),
        "format": st.sampled_from(["json", "", "xml"]) | json_values,
        "keep_alive": st.sampled_from(["5m", "0", "x", -1]) | json_values,
        "tools": json_values,
        "tool_choice": st.sampled_from(["auto", "none", "required", "x"]) | json_values,
        "response_format": json_values,
        "logprobs": st.booleans() | st.integers(-3, 30),
        "top_logprobs": st.integers(-3, 30),
        "source": st.text(max_size=8),
        "destination": st.text(max_size=8),
        "encoding_format": st.sampled_from(["float", "base64", "hex"]),
        "items": st.lists(json_values, max_size=3) | json_values,
        "metadata": json_values,
        "conversation": st.sampled_from(["conv_missing", ""]) | json_values,
        "previous_response_id": st.sampled_from(["resp_missing", ""]) | json_values,
        "instructions": json_values,
        "text": json_values,
        "max_output_tokens": st.integers(-5, 10**6),
        "store": json_values,
    },
)
bodies = known_fields | json_values


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(path=st.sampled_from(ENDPOINTS), body=bodies)
def test_no_server_errors(live: LiveServer, path: str, body: object) -> None:
    response = httpx.post(f"{live.url}{path}", json=body, timeout=10)
    # 503 is the fake "busy" model's queue-full answer, the only 5xx a client can cause.
    assert response.status_code < 500 or response.status_code == 503, (path, body, response.text)
    if response.status_code >= 400:
        error = response.json()["error"]
        assert isinstance(error, str if path.startswith("/api") else dict)
