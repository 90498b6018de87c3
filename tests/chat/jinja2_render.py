#!/usr/bin/env python3
"""Renders a chat template with Python's jinja2 in the environment that
transformers' apply_chat_template sets up (trim_blocks, lstrip_blocks,
loop controls, tojson as json.dumps(ensure_ascii=False), raise_exception,
strftime_now), for comparison with clspec's interpreter (tests/jinja-render).
Usage: jinja2_render.py TEMPLATE VARS.json [UNIX_TIME]. strftime_now formats
UNIX_TIME in UTC (clspec does the same), the current time without it."""
import datetime
import json
import sys

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment


def main():
    tmpl = open(sys.argv[1], encoding="utf-8").read()
    variables = json.load(open(sys.argv[2], encoding="utf-8"))
    now = int(sys.argv[3]) if len(sys.argv) > 3 else None

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def strftime_now(fmt):
        t = (datetime.datetime.fromtimestamp(now, datetime.timezone.utc) if now is not None
             else datetime.datetime.now(datetime.timezone.utc))
        return t.strftime(fmt)

    class Generation(jinja2.ext.Extension):
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
            return jinja2.nodes.Scope(body, lineno=lineno)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[Generation, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    try:
        out = env.from_string(tmpl).render(**variables)
    except Exception as e:  # the message goes to stderr, exit 1 like jinja-render
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 1
    sys.stdout.write(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
