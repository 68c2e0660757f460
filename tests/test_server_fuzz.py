"""Property-based fuzzing of the request parser through the real server app (issue 8).

Any JSON value as the body, and well-shaped requests whose labels are built from arbitrary
JSON (requirement lists, check specs, IFEval ids and kwargs, labels as JSON strings), must
get 200 or a JSON 4xx naming a field, never a 5xx. Most cases go through the ASGI app
in-process (fast); a handful through the real uvicorn server. Derandomized, so CI sees the
same cases every run; ``FUZZ_EXAMPLES=N`` runs more.
"""

from __future__ import annotations

import json
import os

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from server_utils import ServerThread

from openrlhf_reward.checks import CHECK_KINDS
from openrlhf_reward.ifeval import IFEVAL_INSTRUCTION_ARGS
from openrlhf_reward.schema import REQUIREMENT_TYPES
from openrlhf_reward.scorers import get_scorer

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
CASES: dict[str, int] = {"n": 0}  # cases run and status counts, printed at the end (pytest -s)

json_scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                | st.text(max_size=20))
json_values = st.recursive(json_scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                           max_leaves=12)

# Values a check parameter plausibly takes (so many cases reach the scorer), or anything.
param_values = (st.integers(-3, 50) | st.text(max_size=6) | st.lists(st.text(max_size=6), max_size=3)
                | json_values)


_TYPED = {"min": st.integers(0, 30), "max": st.integers(0, 30), "exact": st.integers(0, 30),
          "marker": st.sampled_from(["-", "*", "1."]), "text": st.text(min_size=1, max_size=6),
          "keywords": st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=3),
          "chars": st.text(min_size=1, max_size=3)}


@st.composite
def check_spec(draw, typed: bool = False):
    from openrlhf_reward.checks import _PARAMS

    kind = draw(st.sampled_from(CHECK_KINDS))
    if kind == "ifeval":
        iid = draw(st.sampled_from(sorted(IFEVAL_INSTRUCTION_ARGS)))
        names = IFEVAL_INSTRUCTION_ARGS[iid]
        kw = draw(st.dictionaries(st.sampled_from(names), param_values, max_size=len(names))) if names else {}
        return {"kind": kind, "instruction_id": iid, "kwargs": kw}
    allowed, required = _PARAMS[kind]
    spec = {"kind": kind}
    for name in sorted(allowed):
        if name in required or draw(st.booleans()):
            spec[name] = draw(_TYPED[name] if typed and name in _TYPED else param_values)
    return spec


check_specs = st.one_of(json_values, check_spec(), st.fixed_dictionaries({"kind": json_values}))
requirement = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {"id": st.text(min_size=1, max_size=6) | json_values,
         "type": st.sampled_from(REQUIREMENT_TYPES) | json_values,
         "text": st.text(min_size=1, max_size=20) | json_values},
        optional={"check": check_specs | st.none()},
    ),
    st.builds(lambda i, t, c: {"id": f"r{i}", "type": t, "text": "a requirement", "check": c},
              st.integers(0, 1_000_000), st.sampled_from(REQUIREMENT_TYPES), check_spec()),
)


@st.composite
def ifeval_label(draw):
    ids = draw(st.lists(st.sampled_from(sorted(IFEVAL_INSTRUCTION_ARGS)) | json_values, max_size=3))
    kwargs = []
    for iid in ids:
        names = IFEVAL_INSTRUCTION_ARGS.get(iid, ()) if isinstance(iid, str) else ()
        kwargs.append(draw(st.dictionaries(st.sampled_from(names) if names else st.text(max_size=5),
                                           json_values, max_size=3) | json_values))
    return {"instruction_id_list": ids, "kwargs": draw(st.just(kwargs) | json_values)}


label = st.one_of(
    json_values,
    st.fixed_dictionaries({"requirements": st.lists(requirement, max_size=3) | json_values},
                          optional={"instruction": json_values, "query": json_values}),
    ifeval_label(),
)
label_or_string = label | label.map(lambda v: json.dumps(v))


@st.composite
def requests(draw):
    n = draw(st.integers(0, 3))
    prompts = [draw(st.text(max_size=15)) for _ in range(n)]
    queries = [p + draw(st.text(max_size=40)) if draw(st.booleans()) else draw(st.text(max_size=40)) for p in prompts]
    body = {"query": queries, "prompts": prompts, "labels": [draw(label_or_string) for _ in range(n)]}
    if draw(st.booleans()):
        body["return_details"] = draw(st.booleans() | json_values)
    return body


@pytest.fixture(scope="module")
def client():
    from starlette.testclient import TestClient

    from openrlhf_reward.server.app import create_app
    from openrlhf_reward.server.config import ServerConfig

    app = create_app(get_scorer("rules"), ServerConfig(), "rules")
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c
    print(f"\nfuzz cases run through the server: {CASES}")


def _check(r) -> None:
    CASES["n"] += 1
    CASES[str(r.status_code)] = CASES.get(str(r.status_code), 0) + 1
    assert r.status_code == 200 or 400 <= r.status_code < 500, (r.status_code, r.text[:500])
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    if r.status_code == 200:
        assert len(body["rewards"]) == len(body["scores"])
    else:
        assert body["error"] and body["field"]


@FUZZ
@given(body=json_values)
def test_any_json_body_is_200_or_4xx(client, body):
    _check(client.post("/get_reward", content=json.dumps(body), headers={"content-type": "application/json"}))


@FUZZ
@given(body=requests())
def test_labels_from_arbitrary_json_are_200_or_4xx(client, body):
    _check(client.post("/get_reward", json=body))


plausible_requirement = st.builds(
    lambda i, t, c: {"id": f"r{i}", "type": t, "text": "a requirement", "check": c},
    st.integers(0, 1_000_000), st.sampled_from(REQUIREMENT_TYPES), check_spec(typed=True))


@st.composite
def plausible_requests(draw):
    """Mostly well-formed requests (checks with plausible parameters), so the scorer runs."""
    n = draw(st.integers(1, 3))
    prompts = [draw(st.text(max_size=15)) for _ in range(n)]
    queries = [p + draw(st.text(max_size=200)) for p in prompts]
    labels = [{"requirements": draw(st.lists(plausible_requirement, min_size=1, max_size=4,
                                              unique_by=lambda r: r["id"]))} for _ in range(n)]
    return {"query": queries, "prompts": prompts, "labels": labels, "return_details": draw(st.booleans())}


@FUZZ
@given(body=plausible_requests())
def test_plausible_checks_are_200_or_4xx(client, body):
    _check(client.post("/get_reward", json=body))


@settings(max_examples=10, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(body=requests())
def test_through_the_real_uvicorn_server(uvicorn_server, body):
    _check(httpx.post(uvicorn_server.url + "/get_reward", json=body, timeout=60))


@pytest.fixture(scope="module")
def uvicorn_server():
    with ServerThread(get_scorer("rules"), "rules") as srv:
        yield srv


# ---------------------------------------------------------------- issue 20 shapes

INVISIBLE = ["\u200b", "\ufeff", "\u2060", "\u00ad", "\u3164", "\u2800", "\u180e", "\u115f", "\u1160",
             "\uffa0", " ", "\n", "\u3000", "\u2028"]
# (response, blank by construction): invisible characters and think tags only, or any text
responses = st.one_of(
    st.lists(st.sampled_from([*INVISIBLE, "<think>", "</think>"]), max_size=8).map(lambda p: ("".join(p), True)),
    st.text(max_size=30).map(lambda t: (t, False)),
)
search_args = st.one_of(st.text(alphabet=st.sampled_from(INVISIBLE), max_size=3),
                        st.text(max_size=4), st.just("x" * 257), st.just("ab" * 128))
issue20_label = st.one_of(
    st.sampled_from([[], {}, None, {"requirements": []}, {"requirements": None}, {"instruction_id_list": []}]),
    st.builds(lambda kws: {"instruction_id_list": ["keywords:existence"], "kwargs": [{"keywords": kws}]},
              st.lists(search_args, min_size=1, max_size=2)),
    st.builds(lambda w: {"instruction_id_list": ["keywords:forbidden_words"], "kwargs": [{"forbidden_words": [w]}]},
              search_args),
    st.builds(lambda c: {"instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}], "constraint": c},
              json_values),
    st.integers(255, 258).map(lambda n: {"requirements": [
        {"id": f"r{i}", "type": "style", "text": "t", "check": {"kind": "lowercase"}} for i in range(n)]}),
)


@FUZZ
@given(label=issue20_label, response=responses)
def test_issue20_shapes_are_200_or_4xx_and_blank_scores_0(client, label, response):
    text, blank = response
    r = client.post("/get_reward", json={"query": ["p " + text], "prompts": ["p "], "labels": [label]})
    _check(r)
    if r.status_code == 200 and blank:
        body = r.json()
        assert body["extra_logs"]["blank_response"] == 1.0
        assert body["rewards"] == [0.0]
    if isinstance(label, dict) and len(label.get("requirements") or ()) > 256:
        assert r.status_code == 422 and r.json()["field"] == "labels[0].requirements"
