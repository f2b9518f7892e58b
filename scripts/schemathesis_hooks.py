"""Hooks for scripts/schemathesis.sh: what the document says in prose only.

`parameters` keeps the client's own keys as any JSON: the document says so
with `additionalProperties: {}`, as clients generated from it cannot take a
recursive schema (finding 17 of #19). What the server refuses at any depth
there is in the schema's description: a NUL character in a key or a
string. A number is refused too when it is integral and outside
[-2**63, 2**64): a request's JSON reader cannot keep it exactly. Bodies that
break these rules are schema-valid and rightly a 400, so the fuzzer leaves
them out rather than report valid data refused; the rules themselves are
tested in crates/rje/tests.

A token request for an admin with a scope is refused too (an admin covers
every host: a scoped one could make itself an unscoped token), which the
document says in prose.
"""

import schemathesis

# Keys of `parameters` the document describes exactly.
DESCRIBED = {"env", "cwd", "allow_daemons"}


def refused(value):
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, int):
        return not -(2**63) <= value < 2**64
    if isinstance(value, float):
        return value.is_integer() and not -(2.0**63) <= value < 2.0**64
    if isinstance(value, list):
        return any(refused(item) for item in value)
    if isinstance(value, dict):
        return any("\x00" in key or refused(item) for key, item in value.items())
    return False


def scoped_admin(body):
    return (
        body.get("role") == "admin"
        and bool(body.get("hosts") or body.get("labels"))
    )


@schemathesis.hook
def filter_body(context, body):
    if isinstance(body, dict) and scoped_admin(body):
        return False
    parameters = body.get("parameters") if isinstance(body, dict) else None
    if not isinstance(parameters, dict):
        return True
    return not any(refused(item) for key, item in parameters.items() if key not in DESCRIBED)
