#!/bin/sh
# Refuses every #include that breaks the layers declared in src/layers.txt
# (the rules are written there): a module including a layer above it or
# beside it, another module's private header, or a program's headers other
# than its public ones, or a system header that a `system` line reserves to
# other modules; and a name of ours (a tse_, TSE_, tsb_ or TSB_
# macro, typedef or function) defined by two modules, one name for two
# things in two programs, or without its module's prefix. Prints one line per violation, "file:line: ..." as
# a compiler does, and exits 1; prints nothing and exits 0 when the tree
# keeps its layers. Runs at every build (target tse_layers) and as
# lint/layers.
#
# A reserved system header is refused through another module's header too:
# including a header of a module that (itself or through the headers it
# includes) includes <hiredis/...> exposes hiredis's types as surely as
# including it directly, so such a header must be private to its module.
#
# Quoted includes are resolved as the compiler resolves them: the including
# file's directory first, then the declaration's search roots; one that
# resolves to no file of the declared directories is refused too (so a
# header cannot hide from the check). Angle includes that resolve to none
# are system headers and are not checked.
#
# usage: scripts/check-layers.sh [ROOT [DECLARATION]]
#   ROOT         the source tree (default: this checkout)
#   DECLARATION  relative to ROOT (default: src/layers.txt)
set -eu
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$root"
decl=${2:-src/layers.txt}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Every directory the declaration names, and its C files: what is checked
# and what an include may resolve to.
dirs=$(awk '$1 == "search" { for (i = 2; i <= NF; i++) print $i }
            $1 == "layer" || $1 == "program" { print $3 }' "$decl" | LC_ALL=C sort -u)
present=
missing=
for d in $dirs; do
  if [ -d "$d" ]; then present="$present $d"; else missing="$missing $d"; fi
done
: > "$tmp/files"
if [ -n "$present" ]; then
  find $present -type f \( -name '*.c' -o -name '*.h' \) | LC_ALL=C sort -u > "$tmp/files"
fi
: > "$tmp/srcdirs"
if [ -d src ]; then
  find src -mindepth 1 -maxdepth 1 -type d | LC_ALL=C sort > "$tmp/srcdirs"
fi

exec awk -v decl="$decl" -v files="$tmp/files" -v srcdirs="$tmp/srcdirs" -v missing="$missing" '
function fail(msg) {
    print msg > "/dev/stderr"
    bad++
}

function glob_re(g) {
    gsub(/\./, "\\.", g)
    gsub(/\*/, ".*", g)
    return "^" g "$"
}

# The module whose directory holds path (the longest one), or "".
function owner(path,    m, best) {
    best = ""
    for (m in dir)
        if (index(path, dir[m] "/") == 1 && (best == "" || length(dir[m]) > length(dir[best])))
            best = m
    return best
}

function dirname(p) {
    if (p !~ /\//)
        return "."
    sub(/\/[^\/]*$/, "", p)
    return p
}

# Whether path, a header of module o, is closed to the other modules.
function is_private(path, o,    b, i) {
    if (o in pub)
        return index(path, pub[o] "/") != 1
    if (kind[o] == "program")
        return 1
    b = path
    sub(/.*\//, "", b)
    for (i = 1; i <= nprivate; i++)
        if (b ~ private_re[i])
            return 1
    return 0
}

function resolve(inc, from, quoted,    c, i) {
    if (quoted) {
        c = dirname(from) "/" inc
        if (c in have)
            return c
    }
    for (i = 1; i <= nsearch; i++) {
        c = search[i] "/" inc
        if (c in have)
            return c
    }
    return ""
}

function check(file, line, inc, quoted,    m, o, target, shown, at) {
    m = module_of[file]
    shown = quoted ? "\"" inc "\"" : "<" inc ">"
    at = file ":" line ": " m " includes " shown
    if (inc ~ /(^|\/)\.\.(\/|$)/) {
        fail(at " through \"..\"; name it from a search root of " decl)
        return
    }
    target = resolve(inc, file, quoted)
    if (target == "") {
        if (quoted)
            fail(at ", which is no header of the directories " decl " declares")
        else
            check_system(at, m, inc)
        return
    }
    o = module_of[target]
    if (o == m)
        return
    if (o == "")
        fail(at " (" target "), which is in no module of " decl)
    else if (!((m, o) in may))
        fail(at " of " o ", which " m " may not include (" m " may include: " \
             (list[m] == "" ? "nothing" : list[m]) ")")
    else if (is_private(target, o))
        fail(at " (" target "), which is private to " o)
    else
        check_exposed(at, m, target)
}

# The first system header reserved by a `system` line that path includes,
# itself or through the quoted includes it resolves: its name, and in
# via[path] the headers it goes through ("" when path includes it itself);
# "" when none. Memoised; a cycle counts as none.
function exposed(path,    l, n, i, inc, q, t, r) {
    if (path in exposed_memo)
        return exposed_memo[path]
    exposed_memo[path] = ""
    via[path] = ""
    if (path == scanning)
        return ""
    n = 0
    while ((getline l < path) > 0) {
        if (l !~ /^[ \t]*#[ \t]*include[ \t]*[<"]/)
            continue
        sub(/^[ \t]*#[ \t]*include[ \t]*/, "", l)
        if (match(l, /^"[^"]*"/) || match(l, /^<[^>]*>/)) {
            inc[++n] = substr(l, 2, RLENGTH - 2)
            q[n] = substr(l, 1, 1) == "\""
        }
    }
    close(path)
    r = ""
    for (i = 1; i <= n && r == ""; i++) {
        t = resolve(inc[i], path, q[i])
        if (t == "" && !q[i] && reserved(inc[i])) {
            r = inc[i]
        } else if (t != "" && (r = exposed(t)) != "") {
            via[path] = t (via[t] == "" ? "" : ", " via[t])
        }
    }
    exposed_memo[path] = r
    return r
}

# The index of the `system` line reserving the directory of inc, or 0.
function reserved(inc,    i) {
    for (i = 1; i <= nsystem; i++)
        if (index(inc, system_dir[i] "/") == 1)
            return i
    return 0
}

# A header of another module that exposes a system header m may not include.
function check_exposed(at, m, target,    inc, i) {
    inc = exposed(target)
    if (inc == "")
        return
    i = reserved(inc)
    if (i && !((i, m) in system_may))
        fail(at " (" target "), which exposes <" inc ">" \
             (via[target] == "" ? "" : " through " via[target]) ", which only " system_list[i] \
             " may include (" decl ": system " system_dir[i] "); make the header private" \
             " to its module or keep " system_dir[i] " out of it")
}

# A system header under a directory that a `system` line reserves: only the
# modules it names may include it.
function check_system(at, m, inc,    i) {
    for (i = 1; i <= nsystem; i++)
        if (index(inc, system_dir[i] "/") == 1 && !((i, m) in system_may))
            fail(at ", which only " system_list[i] " may include (" decl ": system " \
                 system_dir[i] ")")
}

function read_declaration(    l, t, n, i, name, r, dn) {
    while ((r = (getline l < decl)) > 0) {
        dn++
        sub(/#.*/, "", l)
        n = split(l, t)
        if (n == 0)
            continue
        if (t[1] == "search") {
            for (i = 2; i <= n; i++)
                search[++nsearch] = t[i]
        } else if (t[1] == "system" && n >= 3) {
            system_dir[++nsystem] = t[2]
            system_list[nsystem] = ""
            for (i = 3; i <= n; i++) {
                if (!(t[i] in dir))
                    fail(decl ":" dn ": system " t[2] " names " t[i] \
                         ", which is not declared above it")
                system_may[nsystem, t[i]] = 1
                system_list[nsystem] = system_list[nsystem] (i == 3 ? "" : " ") t[i]
            }
        } else if (t[1] == "private") {
            for (i = 2; i <= n; i++)
                private_re[++nprivate] = glob_re(t[i])
        } else if ((t[1] == "layer" || t[1] == "program") && n >= 3) {
            name = t[2]
            if (name in dir)
                fail(decl ":" dn ": " name " is declared twice")
            kind[name] = t[1]
            dir[name] = t[3]
            list[name] = ""
            i = 4
            prefix[name] = "tse"
            if (i < n && t[i] == "public") {
                pub[name] = t[i + 1]
                i += 2
            }
            if (i < n && t[i] == "prefix") {
                prefix[name] = t[i + 1]
                i += 2
            }
            if (i <= n && t[i] != ":")
                fail(decl ":" dn ": expected \":\" before what " name " may include")
            for (i++; i <= n; i++) {
                if (!(t[i] in dir) || t[i] == name)
                    fail(decl ":" dn ": " name " may include " t[i] \
                         ", which is not declared above it")
                may[name, t[i]] = 1
                list[name] = list[name] (list[name] == "" ? "" : " ") t[i]
            }
        } else {
            fail(decl ":" dn ": not a declaration: " l)
        }
    }
    if (r < 0)
        fail(decl ": cannot be read")
}

# A name of ours defined at file:line: it must carry the prefix of its module,
# and the first module to define it owns it; another module that defines it
# too is refused: one name for two things (or one thing twice) in two
# programs. Within one module the compiler is the
# judge (an opaque typedef repeated, a macro under #if and #else).
function defined(name, file, line,    m) {
    m = module_of[file]
    if (tolower(substr(name, 1, 4)) != prefix[m] "_")
        fail(file ":" line ": " m " defines " name "; its names take " prefix[m] "_ (" \
             toupper(prefix[m]) "_ for macros), as " decl " says")
    if (!(name in name_module)) {
        name_module[name] = m
        name_at[name] = file ":" line
    } else if (name_module[name] != m) {
        fail(file ":" line ": " m " defines " name ", which " name_module[name] \
             " defines too (" name_at[name] "); a name belongs to one module" \
             " (names of the bridge alone take tsb_)")
    }
}

# The macros, typedefs and functions named tse_, TSE_, tsb_ or TSB_ that a
# line defines. A function is a line at column 0 naming one before "(",
# whose "{" opens a later line at column 0 before any line ends with ";" (a
# prototype) or is blank.
function names(file, ln, l,    n) {
    if (pending != "") {
        if (l ~ /^\{/)
            defined(pending, file, pending_line)
        if (l ~ /^\{/ || l ~ /;[ \t]*$/ || l ~ /^[ \t]*$/)
            pending = ""
    }
    if (match(l, /^[ \t]*#[ \t]*define[ \t]+(tse|TSE|tsb|TSB)_[A-Za-z0-9_]*/)) {
        n = substr(l, RSTART, RLENGTH)
        sub(/.*[ \t]/, "", n)
        defined(n, file, ln)
    } else if (match(l, /^}[ \t]*(tse|tsb)_[A-Za-z0-9_]*;/) ||
               match(l, /^typedef[^(]*[ *](tse|tsb)_[A-Za-z0-9_]*;/) ||
               match(l, /^typedef[^(]*\([ \t]*\*[ \t]*(tse|tsb)_[A-Za-z0-9_]*\)/)) {
        n = substr(l, RSTART, RLENGTH - 1)
        sub(/.*[ *}]/, "", n)
        defined(n, file, ln)
    } else if (l ~ /^[A-Za-z_]/ && l !~ /^typedef/ && l !~ /;[ \t]*$/ &&
               match(l, /[ *](tse|tsb)_[A-Za-z0-9_]*\(/)) {
        pending = substr(l, RSTART + 1, RLENGTH - 2)
        pending_line = ln
        if (l ~ /\{[ \t]*$/) {
            defined(pending, file, ln)
            pending = ""
        }
    }
}

function scan(file,    l, ln) {
    scanning = file
    pending = ""
    while ((getline l < file) > 0) {
        ln++
        names(file, ln, l)
        if (l !~ /^[ \t]*#[ \t]*include[ \t]*[<"]/)
            continue
        sub(/^[ \t]*#[ \t]*include[ \t]*/, "", l)
        if (match(l, /^"[^"]*"/) || match(l, /^<[^>]*>/))
            check(file, ln, substr(l, 2, RLENGTH - 2), substr(l, 1, 1) == "\"")
    }
    close(file)
}

BEGIN {
    read_declaration()
    n = split(missing, gone)
    for (i = 1; i <= n; i++)
        fail(decl ": " gone[i] " is declared but is no directory")
    while ((getline p < files) > 0) {
        have[p] = 1
        order[++nfiles] = p
    }
    for (i = 1; i <= nfiles; i++)
        module_of[order[i]] = owner(order[i])
    while ((getline d < srcdirs) > 0)
        if (owner(d "/") == "")
            fail(d ": a directory of src/ in no module of " decl)
    for (i = 1; i <= nfiles; i++)
        if (module_of[order[i]] != "")
            scan(order[i])
    if (bad) {
        print bad " violation(s) of the layers declared in " decl > "/dev/stderr"
        exit 1
    }
}'
