#!/usr/bin/env python3
"""check_alloc.py - every allocation in the given C sources is checked for NULL.

The rule (docs/testing.md, "Allocation results"): the result of an allocator
is either returned as it is (the function is then an allocator too, and its
callers are held to the rule), or stored in one lvalue whose next mention
tests it against NULL:

    p = calloc(1, sizeof(*p));           ok when the next mention of p is one
    if (p == NULL) ...                   of: p == NULL, p != NULL, NULL == p,
                                         !p, if (p), p && ..., p || ..., p ? ...
    if ((copy = strdup(s)) == NULL) ...  ok: the test is the next mention
    use(strdup(s));                      refused: passed on unchecked
    p = realloc(p, n);                   refused: leaks p when it fails

Allocators: the C library's (malloc, calloc, realloc, strdup, strndup), ours
(tse_malloc and friends, common/alloc.h), protobuf-c's unpack (*__unpack,
protobuf_c_message_unpack), and every function of the scanned
files that returns an allocator's result (found here, to a fixed point: a
wrapper such as `req_new` is held to the rule at its call sites).
gRPC's allocations (grpc_slice_malloc, grpc_raw_byte_buffer_create, gpr_*)
abort on failure instead of returning NULL, so they need no check.

Where NULL is a valid value of the lvalue (a field read as "none" where it
is used), the allocation's line says so in a comment starting "NULL ok:"
with the reason; the check accepts it and lists every such line, so a
reviewer sees each one.

This reads C as text, not as a compiler does: it knows our style (clang-format,
a function body's braces at column 0) and no more. A line the check cannot
read is rewritten so that it can.

Usage: check_alloc.py FILE_OR_DIR...   exit 0 when clean, 1 with one line per
violation (file:line: what), 2 on a usage error.
       check_alloc.py --self-test FILE   the check refuses exactly the lines
of FILE marked "expect: refused" (tests/fixtures/check_alloc/sample.c).
"""
import os
import re
import sys

BASE_ALLOCATORS = {
    "malloc", "calloc", "realloc", "strdup", "strndup",
    "tse_malloc", "tse_calloc", "tse_realloc", "tse_strdup", "tse_strndup",
    "protobuf_c_message_unpack",
}
UNPACK = re.compile(r"^\w+__unpack$")
IDENT = r"[A-Za-z_]\w*"
# An lvalue: optional derefs, a name, then ->member, .member or [index].
LVALUE = re.compile(r"(\**\s*" + IDENT + r"(?:\s*(?:->|\.)\s*" + IDENT + r"|\[[^\[\]]*\])*)\s*$")
KEYWORDS = {"if", "while", "for", "switch", "return", "sizeof", "do", "else"}


def strip(text):
    """Comments, strings and character literals blanked, newlines kept."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            out.append(c + " " * (j - i - 1) + c)
            i = j + 1
        elif c == "#" and (i == 0 or text[i - 1] == "\n"):
            # Preprocessor lines (macros may hold anything): skipped whole.
            j = i
            while True:
                k = text.find("\n", j)
                if k < 0:
                    k = n
                    break
                if text[k - 1] != "\\":
                    break
                j = k + 1
            out.append(re.sub(r"[^\n]", " ", text[i:k]))
            i = k
        else:
            out.append(c)
            i += 1
    return "".join(out)


def functions(code):
    """(name, body start, body end) of every function definition: a body
    opens with '{' at column 0 after a line ending in ')'."""
    result = []
    for m in re.finditer(r"^\{", code, re.M):
        head = code[:m.start()].rstrip()
        if not head.endswith(")"):
            continue
        depth, j = 0, len(head) - 1
        while j >= 0:
            depth += {")": 1, "(": -1}.get(head[j], 0)
            if depth == 0:
                break
            j -= 1
        name = re.search(r"(" + IDENT + r")\s*$", head[:j])
        end = re.compile(r"^\}", re.M).search(code, m.end())
        if name and end:
            result.append((name.group(1), m.end(), end.start()))
    return result


def close_paren(code, open_at):
    depth = 0
    for j in range(open_at, len(code)):
        if code[j] == "(":
            depth += 1
        elif code[j] == ")":
            depth -= 1
            if depth == 0:
                return j
    return len(code) - 1


def statement_start(code, at, lo):
    """Where the statement holding position `at` begins (after ; { or })."""
    j = at - 1
    while j >= lo and code[j] not in ";{}":
        j -= 1
    return j + 1


def last_assignment(prefix):
    """Index of the last plain '=' in prefix (not ==, !=, <=, >=), or -1."""
    for j in range(len(prefix) - 1, -1, -1):
        if prefix[j] != "=":
            continue
        before = prefix[j - 1] if j > 0 else ""
        after = prefix[j + 1] if j + 1 < len(prefix) else ""
        if before in "=!<>+-*/%&|^" or after == "=":
            continue
        return j
    return -1


def mention_pattern(lvalue):
    parts = re.split(r"(\s+)", lvalue)
    text = "".join(re.escape(p) if not p.isspace() else r"\s*" for p in parts)
    text = text.replace(r"\-\>", r"\s*->\s*").replace(r"\.", r"\s*\.\s*")
    return re.compile(r"(?<![\w.>*])" + text + r"(?![\w\[])" if not lvalue.startswith("*")
                      else r"(?<![\w.>*])" + text + r"(?![\w\[])")


def is_null_test(code, start, end):
    """True when the mention code[start:end] is tested against NULL there."""
    before = code[:start].rstrip()
    after = code[end:].lstrip()
    if re.match(r"(==|!=)\s*NULL\b", after):
        return True
    if re.search(r"\bNULL\s*(==|!=)$", before):
        return True
    if before.endswith("!") and not before.endswith("!="):
        return not re.match(r"(->|\.|\[|\()", after)
    if re.match(r"(&&|\|\||\?)", after) and re.search(r"(\(|&&|\|\||=|;|return)$", before):
        return True
    if after.startswith(")") and re.search(r"(\bif\s*\(|\bwhile\s*\(|&&|\|\|)$", before):
        return True
    if after.startswith(";") and re.search(r"(&&|\|\|)$", before):
        return True  # the last operand of a truth value: return a && p;
    return False


def is_static(code, lo):
    """True when the function whose body starts at lo is declared static."""
    head_end = lo - 1
    head_start = max(code.rfind(";", 0, head_end), code.rfind("}", 0, head_end)) + 1
    return re.search(r"\bstatic\b", code[head_start:head_end]) is not None


def find_wrappers(sources, allocators):
    """Functions that return an allocator's result, to a fixed point: a static
    one counts in its own file only (files may each have a static `load`),
    any other everywhere. Returns (the global set, {path: the file's own})."""
    local = {path: set() for path in sources}
    changed = True
    while changed:
        changed = False
        for path, code in sources.items():
            known = allocators | local[path]
            names = "|".join(sorted(known)) + r"|\w+__unpack"
            for name, lo, hi in functions(code):
                if name in known:
                    continue
                body = code[lo:hi]
                direct = re.search(r"\breturn\s+(" + names + r")\s*\(", body)
                stored = set(re.findall(r"(" + IDENT + r")\s*=\s*(?:[^;=]*\?\s*)?(?:"
                                        + names + r")\s*\(", body))
                returned = set(re.findall(r"\breturn\s+(" + IDENT + r")\s*;", body))
                if direct or stored & returned:
                    (local[path] if is_static(code, lo) else allocators).add(name)
                    known.add(name)
                    changed = True
    return allocators, local


def marked(raw, line):
    """The reason of a "NULL ok:" comment on that line, or None."""
    lines = raw.splitlines()
    m = re.search(r"NULL ok:\s*(.*?)\s*(\*/|$)", lines[line - 1]) if line <= len(lines) else None
    return m.group(1) if m else None


def check_file(path, raw, code, allocators, allowed):
    problems = []
    names = "|".join(sorted(allocators)) + r"|\w+__unpack"
    call = re.compile(r"(?<![\w.>])(" + names + r")\s*\(")
    bodies = functions(code)
    for m in call.finditer(code):
        func = m.group(1)
        body = next(((lo, hi) for _, lo, hi in bodies if lo <= m.start() < hi), None)
        if body is None:
            continue  # a declaration or definition, not a call
        lo, hi = body
        line = code.count("\n", 0, m.start()) + 1
        where = "%s:%d" % (path, line)
        stmt = statement_start(code, m.start(), lo)
        prefix = code[stmt:m.start()]
        if re.search(r"\breturn\s*([^;]*\?\s*)?$", prefix):
            continue  # the function is an allocator itself (if (...) return alloc(...) too)
        eq = last_assignment(prefix)
        if eq < 0:
            problems.append("%s: the result of %s() is used without being stored and "
                            "checked for NULL" % (where, func))
            continue
        between = prefix[eq + 1:]
        # Parentheses, one cast ("(Type *)", a pure conversion) or a ternary's branch.
        if not re.fullmatch(r"\s*(\(\s*)*(\(\s*(const\s+|struct\s+)?\w+\s*\**\s*\)\s*)?"
                            r"|[^;]*\?\s*", between):
            problems.append("%s: the result of %s() is part of an expression; store it "
                            "and check it for NULL" % (where, func))
            continue
        array = re.search(r"\(\s*\*\s*(" + IDENT + r")\s*\)\s*\[[^\]]*\]\s*$", prefix[:eq])
        target = array or LVALUE.search(re.sub(r"\(\s*$", "", prefix[:eq].rstrip()))
        if target is None:
            problems.append("%s: cannot tell where the result of %s() goes" % (where, func))
            continue
        lvalue = target.group(1).strip()
        # "Type *name = ..." declares name; "*p = ..." at a statement's start
        # stores through p.
        if lvalue.startswith("*") and re.search(IDENT + r"\s*$",
                                                prefix[:eq][:target.start(1)].rstrip()):
            lvalue = lvalue.lstrip("*").strip()
        if lvalue.split("->")[0].split(".")[0].split("[")[0].strip("* ") in KEYWORDS:
            problems.append("%s: cannot tell where the result of %s() goes" % (where, func))
            continue
        end = close_paren(code, m.end() - 1)
        if func in ("realloc", "tse_realloc"):
            first_arg = code[m.end():end].split(",")[0].strip()
            if first_arg == lvalue:
                problems.append("%s: %s = realloc(%s, ...) leaks the old block when it "
                                "fails" % (where, lvalue, lvalue))
                continue
        if marked(raw, line):
            allowed.append("%s: '%s' (from %s()) may be NULL: %s"
                           % (where, lvalue, func, marked(raw, line)))
            continue
        # if ((p = alloc(...)) == NULL), if (!(p = alloc(...))): tested as stored.
        if re.match(r"\s*\)\s*(==|!=)\s*NULL\b", code[end + 1:]) or (
                re.search(r"!\s*\(\s*$", prefix[:target.start(1)] if not array else "")
                and re.match(r"\s*\)", code[end + 1:])):
            continue
        mention = mention_pattern(lvalue).search(code, end + 1, hi)
        if mention and re.match(r"\s*;", code[mention.end():]) and re.search(
                r"\breturn\s*$", code[:mention.start()]):
            continue  # returned as it is: the function is an allocator
        if mention is None or not is_null_test(code, mention.start(), mention.end()):
            problems.append("%s: '%s' (from %s()) is not checked for NULL before its "
                            "next use" % (where, lvalue, func))
    return problems


def c_files(args):
    for arg in args:
        if os.path.isdir(arg):
            for root, _, files in os.walk(arg):
                for f in sorted(files):
                    if f.endswith(".c"):
                        yield os.path.join(root, f)
        else:
            yield arg


def self_test(path):
    with open(path, encoding="utf-8") as f:
        raw = f.read()
    code = strip(raw)
    allocators, local = find_wrappers({path: code}, set(BASE_ALLOCATORS))
    found = {int(p.split(":")[1])
             for p in check_file(path, raw, code, allocators | local[path], [])}
    want = {i + 1 for i, line in enumerate(raw.splitlines()) if "expect: refused" in line}
    for line in sorted(want - found):
        print("%s:%d: should be refused, was accepted" % (path, line))
    for line in sorted(found - want):
        print("%s:%d: should be accepted, was refused" % (path, line))
    print("check_alloc self-test: %d refusals expected, %d found, %d wrong"
          % (len(want), len(found), len(want ^ found)))
    return 1 if want ^ found else 0


def main(argv):
    if len(argv) == 3 and argv[1] == "--self-test":
        return self_test(argv[2])
    if len(argv) < 2:
        print(__doc__.strip().splitlines()[-3], file=sys.stderr)
        return 2
    sources, raws = {}, {}
    for path in c_files(argv[1:]):
        with open(path, encoding="utf-8") as f:
            raws[path] = f.read()
            sources[path] = strip(raws[path])
    allocators, local = find_wrappers(sources, set(BASE_ALLOCATORS))
    problems, allowed = [], []
    for path, code in sorted(sources.items()):
        problems += check_file(path, raws[path], code, allocators | local[path], allowed)
    for p in allowed:
        print("allowed: " + p)
    for p in problems:
        print(p)
    wrappers = sorted((allocators | set().union(*local.values())) - BASE_ALLOCATORS)
    print("check_alloc: %d files, allocators found beyond the base set: %s"
          % (len(sources), ", ".join(wrappers) or "none"))
    print("check_alloc: %d unchecked allocation(s)" % len(problems))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
