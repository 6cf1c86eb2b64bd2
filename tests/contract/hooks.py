"""Schemathesis hooks of the contract fuzz (scripts/contract-tests.sh loads them through
SCHEMATHESIS_HOOKS). Nothing is mocked: every case goes to the real app the script started.

Authentication: every operation that declares the `bearer` scheme gets a real access token.
With FLOODGATE_CONTRACT_ROLES=all (the first pass) it is the demo admin's, made a seller too,
so admin, seller and customer routes are all reached past their role check; with
FLOODGATE_CONTRACT_ROLES=customer (the second pass) it is a plain customer's, so every role
check answers and its 403 meets the document. Access tokens live 5 minutes, so the token is
fetched again every 4 minutes by logging in.
"""

from __future__ import annotations

import json
import os
import urllib.request

import schemathesis

BASE = os.environ["FLOODGATE_CONTRACT_URL"]
PASSWORD = os.environ["FLOODGATE_CONTRACT_PASSWORD"]
ROLES = os.environ.get("FLOODGATE_CONTRACT_ROLES", "all")


def _post(path: str, body: dict, token: str | None = None) -> dict:
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    req = urllib.request.Request(
        BASE + path, data=json.dumps(body).encode(), headers=headers, method="POST"
    )
    with urllib.request.urlopen(req, timeout=30) as res:
        return json.load(res)


def fuzz_token() -> str:
    """A fresh access token: the admin made a seller too (idempotent), so the token carries
    every role; or the demo customer's."""
    if ROLES == "customer":
        return _post(
            "/api/v1/auth/login", {"email": "customer@floodgate.local", "password": PASSWORD}
        )["access_token"]
    login = _post("/api/v1/auth/login", {"email": "admin@floodgate.local", "password": PASSWORD})
    seller = _post(
        "/api/v1/users/me/seller", {"display_name": "Contract Fuzz"}, login["access_token"]
    )
    return seller["access_token"]


@schemathesis.auth(refresh_interval=240)
class FloodgateBearer:
    def get(self, case, context):
        return fuzz_token()

    def set(self, case, data, context):
        # only where the document asks for it: public routes stay anonymous
        if case.operation.definition.raw.get("security"):
            case.headers = case.headers or {}
            case.headers["Authorization"] = f"Bearer {data}"


@schemathesis.hook
def before_generate_path_parameters(context, strategy):
    """Half the valid path parameters name seeded rows (ids 1-6 exist for goods, concerts,
    schedules, campaigns; `concert-42` is the configured queue), so success answers and their
    schemas are checked too, not only 404s. Invalid (negative) values are left alone."""
    from hypothesis import strategies as st

    def seeded(params):
        return st.fixed_dictionaries(
            {
                name: (
                    st.integers(min_value=1, max_value=6)
                    if isinstance(value, int) and not isinstance(value, bool)
                    else st.just("concert-42")
                    if name == "queue_id" and isinstance(value, str)
                    else st.just(value)
                )
                for name, value in params.items()
            }
        )

    def maybe_seeded(generated):
        # schemathesis 4 wraps each draw with its mutation metadata (None: a valid value)
        params = getattr(generated, "value", None)
        if not isinstance(params, dict) or not params or generated.meta is not None:
            return st.just(generated)
        return st.one_of(
            st.just(generated),
            seeded(params).map(lambda new: generated.map_value(lambda _: new)),
        )

    return strategy.flatmap(maybe_seeded)


_OWN_GOODS: list[int] = []


def own_goods() -> int:
    """A goods item of the fuzz token's seller (made once per run), so image uploads get past
    the owner check and their body rules (type, size, count) meet the document too."""
    if not _OWN_GOODS:
        goods = _post(
            "/api/v1/goods",
            {"name": "Contract fuzz goods", "price": 1000, "stock": 10},
            fuzz_token(),
        )
        _OWN_GOODS.append(goods["id"])
    return _OWN_GOODS[0]


@schemathesis.hook
def map_case(context, case):
    """Image uploads to seeded goods 1-3 go to the fuzz seller's own goods instead (4-6 stay
    another seller's: 403). Only with the all-roles token; the customer's is no seller."""
    if (
        ROLES == "all"
        and case.method.upper() == "POST"
        and case.operation.path.endswith("/goods/{id}/images")
        and isinstance(case.path_parameters, dict)
        and case.path_parameters.get("id") in (1, 2, 3)
    ):
        case.path_parameters = {**case.path_parameters, "id": own_goods()}
    return case
