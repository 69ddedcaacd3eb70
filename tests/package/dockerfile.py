"""dockerfile.py - a small reader of our Dockerfile (no Docker engine here).

Parses instructions the way the Dockerfile reference describes: a trailing
backslash continues a line, lines starting with '#' are comments (also
inside a continued instruction), arguments in JSON form are exec form.
Groups instructions into stages (FROM ... AS name). Only what our
Dockerfile uses is supported; anything else is an error, so the checks
never pass on something they did not understand.

Used by check_containers.py (ctest package/containers) and by make
test-fresh (scripts/test-fresh.sh), which replays the build and runtime
stages in fresh Debian roots: `python3 dockerfile.py stage-script
Dockerfile STAGE` prints a stage's RUN steps as a shell script.
"""

import json
import shlex
import sys

KNOWN = {"FROM", "WORKDIR", "COPY", "RUN", "ENV", "USER", "EXPOSE",
         "HEALTHCHECK", "CMD", "STOPSIGNAL", "ARG", "LABEL"}


class Instruction:
    def __init__(self, keyword, args, line):
        self.keyword = keyword
        self.args = args      # the text after the keyword
        self.line = line      # line number where it starts

    def exec_form(self):
        """The JSON array of an exec-form argument, or None (shell form)."""
        text = self.args.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except ValueError:
                return None
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                return value
        return None

    def __repr__(self):
        return "%s %s (line %d)" % (self.keyword, self.args, self.line)


class Stage:
    def __init__(self, base, name, line):
        self.base = base
        self.name = name
        self.line = line
        self.instructions = []

    def all(self, keyword):
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword):
        found = self.all(keyword)
        return found[-1] if found else None


def parse(text):
    """Returns the list of stages; raises ValueError on what it cannot read."""
    instructions = []
    pending, start = None, 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line.startswith("#") or (not line and pending is None):
            continue
        if pending is None:
            pending, start = "", number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        pending += line
        keyword, _, args = pending.strip().partition(" ")
        keyword = keyword.upper()
        if keyword not in KNOWN:
            raise ValueError("line %d: unsupported instruction %s" % (start, keyword))
        instructions.append(Instruction(keyword, args.strip(), start))
        pending = None
    if pending is not None:
        raise ValueError("line %d: instruction continues past the end" % start)
    stages = []
    for ins in instructions:
        if ins.keyword == "FROM":
            words = ins.args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            if len(words) not in (1, 3) or (len(words) == 3 and name is None):
                raise ValueError("line %d: cannot read FROM %s" % (ins.line, ins.args))
            stages.append(Stage(words[0], name, ins.line))
        elif not stages:
            if ins.keyword != "ARG":
                raise ValueError("line %d: %s before FROM" % (ins.line, ins.keyword))
        else:
            stages[-1].instructions.append(ins)
    return stages


def stage_named(stages, name):
    for s in stages:
        if s.name == name:
            return s
    raise KeyError("no stage named %s" % name)


def chain(stages, name):
    """The stage and the stages it is built FROM, base first."""
    out = []
    stage = stage_named(stages, name)
    while True:
        out.insert(0, stage)
        names = [s.name for s in stages]
        if stage.base not in names:
            return out
        stage = stage_named(stages, stage.base)


def env_of(stages, name):
    """The ENV a stage's processes get (its own and its bases')."""
    env = {}
    for stage in chain(stages, name):
        for ins in stage.all("ENV"):
            for word in shlex.split(ins.args):
                key, eq, value = word.partition("=")
                if not eq:
                    raise ValueError("line %d: ENV without '='" % ins.line)
                env[key] = value
    return env


def user_of(stages, name):
    user = None
    for stage in chain(stages, name):
        found = stage.last("USER")
        if found is not None:
            user = found.args.strip()
    return user


def stage_script(stages, name):
    """A stage's WORKDIR and RUN steps as one sh script (set -e).

    COPY steps are printed as comments: the caller puts the files in place
    (they come from the build context or another stage)."""
    stage = stage_named(stages, name)
    lines = ["set -e", "cd /"]
    for ins in stage.instructions:
        if ins.keyword == "WORKDIR":
            lines.append("mkdir -p %s && cd %s" % (shlex.quote(ins.args), shlex.quote(ins.args)))
        elif ins.keyword == "RUN":
            if ins.exec_form() is not None:
                lines.append(" ".join(shlex.quote(a) for a in ins.exec_form()))
            else:
                lines.append(ins.args)
        elif ins.keyword == "COPY":
            lines.append("# COPY %s (done by the caller)" % ins.args)
    return "\n".join(lines) + "\n"


def healthcheck_argv(stages, name):
    """The HEALTHCHECK command of a stage (or its bases) as an argv."""
    check = None
    for stage in chain(stages, name):
        found = stage.last("HEALTHCHECK")
        if found is not None:
            check = found
    if check is None:
        return None
    text = check.args
    words = text.split()
    while words and words[0].startswith("--"):
        text = text.split(None, 1)[1]
        words = words[1:]
    keyword, _, rest = text.partition(" ")
    if keyword.upper() != "CMD":
        raise ValueError("line %d: HEALTHCHECK without CMD" % check.line)
    array = Instruction("CMD", rest, check.line).exec_form()
    return array if array is not None else ["/bin/sh", "-c", rest]


def main(argv):
    if len(argv) == 4 and argv[1] == "stage-script":
        with open(argv[2]) as f:
            sys.stdout.write(stage_script(parse(f.read()), argv[3]))
        return 0
    if len(argv) == 4 and argv[1] == "healthcheck":
        with open(argv[2]) as f:
            sys.stdout.write("\0".join(healthcheck_argv(parse(f.read()), argv[3])))
        return 0
    if len(argv) == 4 and argv[1] == "env":
        with open(argv[2]) as f:
            for k, v in env_of(parse(f.read()), argv[3]).items():
                sys.stdout.write("%s=%s\n" % (k, v))
        return 0
    sys.stderr.write("usage: dockerfile.py stage-script|healthcheck|env DOCKERFILE STAGE\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
