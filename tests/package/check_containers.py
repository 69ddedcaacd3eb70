"""ctest package/containers: the container files, read without a Docker engine.

docker-compose.yml (parsed with Debian's python3-yaml):
  - services redis, event-service, rest-bridge; Redis 7 with AOF on, its data
    on a named volume declared at the top level, a health check;
  - the service depends on Redis being healthy, the bridge on the service
    being healthy; ports 50051 and 8087 published;
  - every environment key is a setting of the program it goes to (read
    from the built binaries' --help), so a typo cannot pass silently;
  - each service builds a stage of the Dockerfile that exists.
Dockerfile (dockerfile.py):
  - a build stage on debian:bookworm that installs with
    scripts/install-deps.sh build and runs the configure and build commands
    of the Makefile's `build` target (what the README's `make run` and
    `make test` run), then installs the components service, bridge, cli;
  - runtime stages on debian:bookworm-slim that install only
    scripts/install-deps.sh runtime (never apt-get install directly), run as
    a non-root user, carry eventctl, and have health checks: eventctl health
    for the service, GET /health for the bridge;
  - nothing anywhere hides a failure with '|| true'.
.dockerignore keeps the host's build trees, var/ and node_modules out.
README.md has a "Run with Docker" section naming docker compose.

  python3 check_containers.py SOURCE_DIR SERVICE_BIN BRIDGE_BIN
"""

import os
import re
import subprocess
import sys

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dockerfile  # noqa: E402

failures = []


def check(ok, what):
    if not ok:
        failures.append(what)
    return ok


def settings_of(binary):
    """The environment variables a program reads, from its --help."""
    out = subprocess.run([binary, "--help"], capture_output=True, text=True, check=True).stdout
    return set(re.findall(r"^  --\S+\s+([A-Z][A-Z0-9_]*)\s+default ", out, re.M))


def makefile_build_commands(source):
    """The cmake commands of the Makefile's build target, variables filled."""
    with open(os.path.join(source, "Makefile")) as f:
        text = f.read()
    variables = dict(re.findall(r"^(\w+) \?= (.*)$", text, re.M))
    recipe = re.search(r"^build:.*\n((?:\t.*\n)+)", text, re.M)
    commands = []
    for line in recipe.group(1).splitlines():
        line = line.strip().lstrip("@")
        line = re.sub(r"\s*>/dev/null$", "", line)
        line = re.sub(r"\$\((\w+)\)", lambda m: variables.get(m.group(1), m.group(0)), line)
        if line.startswith("cmake"):
            commands.append(line)
    return commands


def check_compose(source, service_settings, bridge_settings, stages):
    with open(os.path.join(source, "docker-compose.yml")) as f:
        text = f.read()
    check("|| true" not in text, "docker-compose.yml: '|| true' hides failures")
    compose = yaml.safe_load(text)
    services = compose.get("services", {})
    check(set(services) == {"redis", "event-service", "rest-bridge"},
          "compose services are %s" % sorted(services))
    redis = services.get("redis", {})
    check(str(redis.get("image", "")).startswith("redis:7"), "redis image is not Redis 7")
    command = redis.get("command", [])
    command = command.split() if isinstance(command, str) else command
    check("--appendonly" in command and command[command.index("--appendonly") + 1] == "yes",
          "redis: AOF is not on (--appendonly yes)")
    volumes = redis.get("volumes", [])
    named = [v.split(":")[0] for v in volumes if isinstance(v, str) and v.endswith(":/data")]
    check(named and named[0] in (compose.get("volumes") or {}),
          "redis: /data is not on a named volume declared under volumes:")
    check("test" in (redis.get("healthcheck") or {}), "redis has no healthcheck")

    def depends(name, on):
        dep = (services.get(name, {}).get("depends_on") or {})
        check(isinstance(dep, dict) and dep.get(on, {}).get("condition") == "service_healthy",
              "%s does not wait for %s to be healthy" % (name, on))

    depends("event-service", "redis")
    depends("rest-bridge", "event-service")
    for name, port, settings in (("event-service", "50051", service_settings),
                                 ("rest-bridge", "8087", bridge_settings)):
        svc = services.get(name, {})
        check(any(str(p).split(":")[-1] == port for p in svc.get("ports", [])),
              "%s does not publish port %s" % (name, port))
        env = svc.get("environment") or {}
        check(isinstance(env, dict) and env, "%s: settings are not in environment:" % name)
        for key in env:
            check(key in settings, "%s: %s is not a setting of the program" % (name, key))
        build = svc.get("build") or {}
        target = build.get("target") if isinstance(build, dict) else None
        check(target in [s.name for s in stages],
              "%s builds target %s, not a stage of the Dockerfile" % (name, target))
        if target in [s.name for s in stages]:
            has_check = "test" in (svc.get("healthcheck") or {})
            check(has_check or dockerfile.healthcheck_argv(stages, target) is not None,
                  "%s has no health check (compose or Dockerfile stage %s)" % (name, target))
    return services


def check_dockerfile(source, stages, text):
    check("|| true" not in text, "Dockerfile: '|| true' hides failures")
    check("apt-get install" not in text,
          "Dockerfile installs packages itself instead of scripts/install-deps.sh")
    names = [s.name for s in stages]
    check(names[:2] == ["build", "runtime"], "stages are %s" % names)
    build = dockerfile.stage_named(stages, "build")
    check(build.base == "debian:bookworm", "build stage is on %s" % build.base)
    runs = " && ".join(i.args for i in build.all("RUN"))
    runs = re.sub(r"\s+", " ", runs)
    check("./scripts/install-deps.sh build" in runs, "build stage: no install-deps.sh build")
    for command in makefile_build_commands(source):
        head = command.split(" -j")[0]  # the job count is the machine's
        check(head in runs, "build stage does not run the Makefile's '%s'" % command)
    for component in ("service", "bridge", "cli"):
        check("--component %s" % component in runs,
              "build stage does not install component %s" % component)
    for target in ("service", "bridge"):
        chain = dockerfile.chain(stages, target)
        check(chain[0].base == "debian:bookworm-slim",
              "%s image is on %s, not debian:bookworm-slim" % (target, chain[0].base))
        user = dockerfile.user_of(stages, target)
        check(user not in (None, "", "root", "0") and not str(user).startswith("0:"),
              "%s runs as root" % target)
        # Each command that runs the script (not one naming it, as rm).
        runtime_runs = " && ".join(i.args for s in chain for i in s.all("RUN"))
        groups = re.findall(r"(?:^|&&|;)\s*\S*install-deps\.sh((?: [a-z]+)*)", runtime_runs)
        check([g.split() for g in groups] == [["runtime"]],
              "%s image installs %s, not exactly install-deps.sh runtime" % (target, groups))
        copies = " ".join(i.args for s in chain for i in s.all("COPY"))
        check("--from=build" in copies, "%s image copies nothing from the build stage" % target)
        check(dockerfile.stage_named(stages, target).last("EXPOSE") is not None,
              "%s stage exposes no port" % target)
        check(dockerfile.stage_named(stages, target).last("CMD") is not None,
              "%s stage has no CMD" % target)
    service_check = " ".join(dockerfile.healthcheck_argv(stages, "service") or [])
    check("eventctl" in service_check and "health" in service_check,
          "service health check is not eventctl health: %s" % service_check)
    bridge_check = " ".join(dockerfile.healthcheck_argv(stages, "bridge") or [])
    check("/health" in bridge_check and "200" in bridge_check,
          "bridge health check does not want 200 from /health: %s" % bridge_check)
    check(dockerfile.stage_named(stages, "service").last("CMD").exec_form() == ["tracseq-events"],
          "service stage does not run tracseq-events")
    check(dockerfile.stage_named(stages, "bridge").last("CMD").exec_form()
          == ["tracseq-rest-bridge"], "bridge stage does not run tracseq-rest-bridge")


def check_dockerignore(source):
    path = os.path.join(source, ".dockerignore")
    if not check(os.path.exists(path), ".dockerignore is missing"):
        return
    with open(path) as f:
        patterns = [p.strip().rstrip("/") for p in f if p.strip() and not p.startswith("#")]

    check(not any(p.startswith("!") for p in patterns), ".dockerignore: '!' is not checked here")
    # Docker's matching: a pattern matches the whole path from the context's
    # root (filepath.Match, plus '**' for any number of folders), and an
    # excluded folder excludes all below it.
    def regex(pattern):
        out, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                out, i = out + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                out, i = out + ".*", i + 2
            elif pattern[i] == "*":
                out, i = out + "[^/]*", i + 1
            elif pattern[i] == "?":
                out, i = out + "[^/]", i + 1
            else:
                out, i = out + re.escape(pattern[i]), i + 1
        return re.compile(out + r"\Z")

    compiled = [regex(p.lstrip("/")) for p in patterns]

    def ignored(rel):
        parts = rel.split("/")
        return any(r.match("/".join(parts[:i])) for i in range(1, len(parts) + 1)
                   for r in compiled)

    for rel in ("build/CMakeCache.txt", "build-sanitize/x.o", "var/redis/appendonly.aof",
                "src/broker/lane.o", "tests/interop/__pycache__/x.pyc",
                "node_modules/x/index.js", "tests/interop/node/node_modules/x.js", ".git/HEAD"):
        check(ignored(rel), ".dockerignore lets %s into the image" % rel)
    for rel in ("src/service/main.c", "scripts/install-deps.sh", "CMakeLists.txt",
                "generated/tracseq_events.desc"):
        check(not ignored(rel), ".dockerignore keeps %s out of the image" % rel)


def check_readme(source):
    with open(os.path.join(source, "README.md")) as f:
        text = f.read()
    section = re.search(r"^## Run with Docker\n(.*?)(?=^## )", text, re.M | re.S)
    if check(section is not None, "README has no 'Run with Docker' section"):
        check("docker compose" in section.group(1), "README's Docker section lacks docker compose")


def main(argv):
    source, service_bin, bridge_bin = argv[1:4]
    with open(os.path.join(source, "Dockerfile")) as f:
        text = f.read()
    stages = dockerfile.parse(text)
    check_dockerfile(source, stages, text)
    check_compose(source, settings_of(service_bin), settings_of(bridge_bin), stages)
    check_dockerignore(source)
    check_readme(source)
    for f in failures:
        print("FAIL:", f)
    if failures:
        return 1
    print("container files: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
