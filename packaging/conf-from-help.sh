#!/bin/sh
# Writes a program's settings file template from its --help (the settings
# table), every setting commented out at its default, so the file installed
# in /etc/tracseq-events/ always lists exactly the settings the binary has.
#
#   packaging/conf-from-help.sh BINARY OUT
set -eu
bin=$1
out=$2
name=$(basename "$bin")
"$bin" --help > "$out.help"
{
  echo "# /etc/tracseq-events/$(basename "$out"): settings of $name"
  echo "# (generated from '$name --help' at build time)."
  echo "#"
  echo "# KEY=value lines, keys as the environment variables; '#' starts a comment."
  echo "# Precedence: defaults < this file < the environment < command-line flags."
  echo "# Every setting below is commented out at its default: uncomment to change"
  echo "# one, then: systemctl restart $name"
  # "  --flag   ENV   default VALUE" then "      help" on the next line; the
  # settings file's own path (--config) is not a setting of the file.
  awk '
    /^  --/ && $3 == "default" && $1 != "--config" {
      key = $2; def = $0; sub(/^.* default /, "", def); want = 1; next
    }
    want { help = $0; sub(/^ +/, "", help); printf "\n# %s\n#%s=%s\n", help, key, def; want = 0 }
  ' "$out.help"
} > "$out.tmp"
rm -f "$out.help"
grep -q '^#[A-Z_]*=' "$out.tmp" || { echo "conf-from-help.sh: no setting found in $bin --help" >&2; exit 1; }
mv "$out.tmp" "$out"
