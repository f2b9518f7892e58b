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

A schedule's `cron` and `timezone` are read by their own grammars (a cron
expression that fires, an IANA zone name), and a schedule's name may not be
shaped like a UUID (routes take the id or the name): the fuzzer's bodies get
a valid expression and zone, and a name made unlike a UUID, so that it
reaches the rest of the schedule's rules; the grammars are tested in
crates/rje-domain and crates/rje/tests.

A token request for an admin with a scope is refused too (an admin covers
every host: a scoped one could make itself an unscoped token), which the
document says in prose.
"""

import re
import uuid

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


UUID_SHAPED = re.compile(r"^[0-9A-Fa-f]{8}-?([0-9A-Fa-f]{4}-?){3}[0-9A-Fa-f]{12}$")


VALID_CRON = "*/5 * * * *"
VALID_ZONE = "Europe/Paris"


def schedule_like(body):
    return isinstance(body, dict) and ("cron" in body or "misfire" in body or "overlap" in body)


def run_like(body):
    return isinstance(body, dict) and ("max_parallel" in body or "labels" in body and "role" not in body
                                       or "stop_on_first_failure" in body or "max_failures" in body)


@schemathesis.hook
def map_body(context, body):
    if run_like(body) and isinstance(body.get("labels"), list):
        # The fuzzer's server has no labelled host: a run over labels goes
        # to the hosts it may name instead.
        del body["labels"]
        body.setdefault("hosts", ["local"])
    if schedule_like(body):
        if isinstance(body.get("cron"), str):
            body["cron"] = VALID_CRON
        if isinstance(body.get("timezone"), str):
            body["timezone"] = VALID_ZONE
        name = body.get("name")
        if isinstance(name, str):
            # Names are unique: a fresh suffix keeps most bodies from
            # meeting a name an earlier one took (a 409, not a test).
            body["name"] = "s" + name[1:90] + "-" + uuid.uuid4().hex[:8]
    return body


def invalid_schedule(body):
    """What map_body would have changed: a phase that does not map bodies
    (the coverage phase) leaves them out instead."""
    name = body.get("name")
    return (
        body.get("cron") not in (None, VALID_CRON)
        or body.get("timezone") not in (None, VALID_ZONE)
        or (isinstance(name, str) and UUID_SHAPED.match(name) is not None)
    )


@schemathesis.hook
def filter_body(context, body):
    if isinstance(body, dict) and scoped_admin(body):
        return False
    if schedule_like(body) and invalid_schedule(body):
        return False
    parameters = body.get("parameters") if isinstance(body, dict) else None
    if not isinstance(parameters, dict):
        return True
    return not any(refused(item) for key, item in parameters.items() if key not in DESCRIBED)
