#!/usr/bin/python3
"""check-breaking.py - proto/ against the descriptor set of the last release.

Like `buf breaking` (wire and generated-code rules), it loads two
FileDescriptorSets, the baseline (proto/baseline/tracseq-events-v1.binpb,
kept in the repository) and the current one (proto/ compiled with protoc,
as scripts/generate.sh does), and reports every change that breaks a client
built against the baseline, one line each, naming file, message and field:

  - a file removed, or its package renamed;
  - a message, enum, service or method removed or renamed;
  - a field number reused for another name, or the field's type or label
    changed; a field removed without its number and name in `reserved`;
  - an enum value's number changed, a number reused for another name, or a
    value removed without its number and name in `reserved`;
  - a method's request or response type, or its streaming, changed.

Additions (fields, messages, enums, values, services, methods, files) pass.
Files under google/protobuf/ (the well-known types, from the system's protoc)
are not ours and are skipped.

Usage:
  check-breaking.py BASELINE CURRENT   each a descriptor set file or a folder
                                       of .proto files (compiled with protoc);
                                       exit 0 when compatible, 1 with one line
                                       per breaking change, 2 on a usage error
  check-breaking.py --write OUT DIR    writes DIR's descriptor set to OUT
                                       (moving the baseline at a release)
  check-breaking.py --self-test DIR    every DIR/<case>/ holds old/ and new/
                                       folders of .proto and `expected`: the
                                       exact report lines (empty: must pass)
"""
import os
import subprocess
import sys
import tempfile

from google.protobuf import descriptor_pb2

FDP = descriptor_pb2.FieldDescriptorProto
TYPE_NAMES = {v: k[len("TYPE_"):].lower() for k, v in FDP.Type.items()}
LABEL_NAMES = {v: k[len("LABEL_"):].lower() for k, v in FDP.Label.items()}


def compile_dir(folder):
    """The FileDescriptorSet of every .proto under folder, as bytes."""
    protos = []
    for root, _dirs, files in os.walk(folder):
        for name in files:
            if name.endswith(".proto"):
                protos.append(os.path.relpath(os.path.join(root, name), folder))
    protos.sort()
    if not protos:
        raise SystemExit(f"check-breaking: no .proto under {folder}")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "set.binpb")
        subprocess.run(["protoc", "-I.", "-I/usr/include", "--include_imports",
                        f"--descriptor_set_out={out}"] + protos, cwd=folder, check=True)
        with open(out, "rb") as f:
            return f.read()


def load(path):
    fds = descriptor_pb2.FileDescriptorSet()
    if os.path.isdir(path):
        fds.ParseFromString(compile_dir(path))
    else:
        with open(path, "rb") as f:
            fds.ParseFromString(f.read())
    return fds


def type_of(field):
    if field.type in (FDP.TYPE_MESSAGE, FDP.TYPE_ENUM, FDP.TYPE_GROUP):
        return field.type_name.lstrip(".")
    return TYPE_NAMES[field.type]


def label_of(field):
    if field.proto3_optional:
        return "optional"
    return LABEL_NAMES[field.label]


def reserved(desc, number, name):
    """Whether number and name are both reserved in desc (a message or an enum).
    Message ranges are end-exclusive, enum ranges end-inclusive."""
    inclusive = isinstance(desc, descriptor_pb2.EnumDescriptorProto)
    in_range = any(r.start <= number < r.end + (1 if inclusive else 0) for r in desc.reserved_range)
    return in_range and name in desc.reserved_name


def collect(fds):
    """file name -> file, and full name -> (file name, descriptor) for every
    message and enum (nested too) and service."""
    files, messages, enums, services = {}, {}, {}, {}

    def walk(fname, prefix, msgs, enum_list):
        for e in enum_list:
            enums[prefix + e.name] = (fname, e)
        for m in msgs:
            full = prefix + m.name
            messages[full] = (fname, m)
            walk(fname, full + ".", m.nested_type, m.enum_type)

    for f in fds.file:
        if f.name.startswith("google/protobuf/"):
            continue
        files[f.name] = f
        prefix = f.package + "." if f.package else ""
        walk(f.name, prefix, f.message_type, f.enum_type)
        for s in f.service:
            services[prefix + s.name] = (f.name, s)
    return files, messages, enums, services


def compare(old_fds, new_fds):
    old_files, old_msgs, old_enums, old_svcs = collect(old_fds)
    new_files, new_msgs, new_enums, new_svcs = collect(new_fds)
    out = []

    for name, f in old_files.items():
        if name not in new_files:
            out.append(f"{name}: file removed or renamed")
        elif new_files[name].package != f.package:
            out.append(f"{name}: package {f.package} renamed to {new_files[name].package}")

    for full, (fname, m) in old_msgs.items():
        if m.options.map_entry:
            continue
        if full not in new_msgs:
            out.append(f"{fname}: message {full}: removed or renamed")
            continue
        nm = new_msgs[full][1]
        new_by_number = {fl.number: fl for fl in nm.field}
        for fl in m.field:
            where = f"{fname}: message {full}: field {fl.number} '{fl.name}'"
            cur = new_by_number.get(fl.number)
            if cur is None:
                if not reserved(nm, fl.number, fl.name):
                    out.append(f"{where}: removed without its number and name in reserved")
                continue
            if cur.name != fl.name:
                out.append(f"{where}: number reused for '{cur.name}'")
            if type_of(cur) != type_of(fl):
                out.append(f"{where}: type {type_of(fl)} changed to {type_of(cur)}")
            if label_of(cur) != label_of(fl):
                out.append(f"{where}: label {label_of(fl)} changed to {label_of(cur)}")

    for full, (fname, e) in old_enums.items():
        if full not in new_enums:
            out.append(f"{fname}: enum {full}: removed or renamed")
            continue
        ne = new_enums[full][1]
        new_by_name = {v.name: v for v in ne.value}
        new_numbers = {v.number: v for v in ne.value}
        for v in e.value:
            where = f"{fname}: enum {full}: value {v.number} '{v.name}'"
            if v.name in new_by_name and new_by_name[v.name].number != v.number:
                out.append(f"{where}: number changed to {new_by_name[v.name].number}")
            elif v.number in new_numbers and v.name not in new_by_name:
                out.append(f"{where}: number reused for '{new_numbers[v.number].name}'")
            elif v.name not in new_by_name and not reserved(ne, v.number, v.name):
                out.append(f"{where}: removed without its number and name in reserved")

    for full, (fname, s) in old_svcs.items():
        if full not in new_svcs:
            out.append(f"{fname}: service {full}: removed or renamed")
            continue
        new_methods = {mt.name: mt for mt in new_svcs[full][1].method}
        for mt in s.method:
            where = f"{fname}: service {full}: method {mt.name}"
            cur = new_methods.get(mt.name)
            if cur is None:
                out.append(f"{where}: removed or renamed")
                continue
            for what, a, b in (("request type", mt.input_type, cur.input_type),
                               ("response type", mt.output_type, cur.output_type)):
                if a != b:
                    out.append(f"{where}: {what} {a.lstrip('.')} changed to {b.lstrip('.')}")
            for what, a, b in (("client streaming", mt.client_streaming, cur.client_streaming),
                               ("server streaming", mt.server_streaming, cur.server_streaming)):
                if a != b:
                    out.append(f"{where}: {what} {str(a).lower()} changed to {str(b).lower()}")
    return out


def self_test(folder):
    failed = 0
    cases = sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)))
    for case in cases:
        path = os.path.join(folder, case)
        got = compare(load(os.path.join(path, "old")), load(os.path.join(path, "new")))
        with open(os.path.join(path, "expected")) as f:
            want = [line for line in f.read().splitlines() if line]
        if sorted(got) == sorted(want):
            print(f"ok   {case}")
        else:
            failed += 1
            print(f"FAIL {case}\n  expected: {want}\n  got:      {got}")
    if not cases:
        print(f"check-breaking: no case under {folder}")
        return 1
    return 1 if failed else 0


def main(argv):
    if len(argv) == 3 and argv[0] == "--write":
        data = compile_dir(argv[2])
        with open(argv[1], "wb") as f:
            f.write(data)
        return 0
    if len(argv) == 2 and argv[0] == "--self-test":
        return self_test(argv[1])
    if len(argv) != 2 or argv[0].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 2
    report = compare(load(argv[0]), load(argv[1]))
    for line in report:
        print(line)
    if report:
        print(f"check-breaking: {len(report)} breaking change(s) against {argv[0]}", file=sys.stderr)
        return 1
    print("check-breaking: no breaking change")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
