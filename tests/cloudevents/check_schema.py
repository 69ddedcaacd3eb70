#!/usr/bin/python3
"""check_schema.py - validates CloudEvents against the CloudEvents 1.0 JSON
schema (cloudevents.json beside this file), formats included.

    check_schema.py FILE...    each FILE: one CloudEvent, or a JSON array of them

Beyond the schema, the rules of the JSON format it cannot say: extension
attribute names are a-z0-9 (at most 20 characters), their values strings,
numbers or booleans; data and data_base64 are not both present; data_base64
is RFC 4648 base64; specversion is "1.0". Prints every violation; exit
status 1 when there is one, 0 otherwise. Uses Debian's python3-jsonschema
(no PyPI): its date-time check needs a package Debian does not pull in, so
RFC 3339 is checked here.
"""
import base64
import binascii
import json
import os
import re
import sys

import jsonschema

HERE = os.path.dirname(os.path.abspath(__file__))
RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
NAME = re.compile(r"^[a-z0-9]{1,20}$")
CORE = {"specversion", "id", "source", "type", "datacontenttype", "dataschema",
        "subject", "time", "data", "data_base64"}

checker = jsonschema.FormatChecker()


@checker.checks("date-time")
def is_rfc3339(value):
    return not isinstance(value, str) or RFC3339.match(value) is not None


def problems(event, validator):
    for e in validator.iter_errors(event):
        yield "%s: %s" % ("/".join(str(p) for p in e.absolute_path) or "event", e.message)
    if not isinstance(event, dict):
        return
    if event.get("specversion") != "1.0":
        yield "specversion: %r is not \"1.0\"" % event.get("specversion")
    if "data" in event and "data_base64" in event:
        yield "data and data_base64 both present"
    if isinstance(event.get("data_base64"), str):
        try:
            base64.b64decode(event["data_base64"], validate=True)
        except binascii.Error as e:
            yield "data_base64: not base64 (%s)" % e
    for name, value in event.items():
        if name in CORE:
            continue
        if not NAME.match(name):
            yield "%s: not a valid attribute name" % name
        if not isinstance(value, (str, int, bool)) or isinstance(value, float):
            yield "%s: an extension must be a string, an integer or a boolean" % name


def main(paths):
    with open(os.path.join(HERE, "cloudevents.json")) as f:
        schema = json.load(f)
    jsonschema.Draft7Validator.check_schema(schema)
    validator = jsonschema.Draft7Validator(schema, format_checker=checker)
    bad = 0
    for path in paths:
        with open(path) as f:
            doc = json.load(f)
        for i, event in enumerate(doc if isinstance(doc, list) else [doc]):
            for p in problems(event, validator):
                print("%s[%d]: %s" % (path, i, p))
                bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
