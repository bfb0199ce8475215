#!/bin/sh
# Regenerate the seed files from commands.txt: `sh fuzz/seeds/gen-seeds.sh`.
# Each seed is a selector byte (see fuzz/src/lib.rs `select`) followed by a
# command. Selector 0x00: client "c", no address, current rsync; 0x09:
# client "fenced" from 192.0.2.10; 0x42: "rooty" with an rsync lacking
# --confine-root; 0x85: "dropper" with an rsync lacking --drop-D.
set -eu
dir=$(dirname "$0")
rm -f "$dir"/seed-*
n=0
grep -v '^#' "$dir/commands.txt" | while IFS= read -r cmd; do
    n=$((n + 1))
    for sel in 00 09 42 85; do
        case $sel in
            00) ;;
            *) [ $((n % 4)) -eq 0 ] || continue ;;
        esac
        f=$(printf '%s/seed-%03d-%s' "$dir" "$n" "$sel")
        printf "\\$(printf '%03o' 0x$sel)" > "$f"
        printf '%s' "$cmd" >> "$f"
    done
done
# Control bytes, which commands.txt cannot hold literally.
printf '\000rsync --server --sender --\033[31m . www/\033[2J' > "$dir/seed-ctl-1"
printf '\000rsync --server --sender -r\001 . www/\r\t' > "$dir/seed-ctl-2"

# The in-band target's seeds (../seeds-inband/): the same requests as the
# daemon hands them to the pre-xfer hook. Each is a selector byte, a module
# byte (the lexical policy's modules in name order: backup drop links nested
# root secret www), a flags byte (bit 0: --sender), then the words after
# `--server [--sender]` separated by NUL bytes, the module name taken off
# the paths as rsync's daemon does (`www/sub` -> `/sub`).
inb="$dir/../seeds-inband"
rm -rf "$inb"
mkdir -p "$inb"
n=0
grep -v '^#' "$dir/commands.txt" | grep '^rsync --server ' | grep -v -- '--daemon' |
while IFS= read -r cmd; do
    n=$((n + 1))
    set -f
    # shellcheck disable=SC2086
    set -- $cmd
    set +f
    shift 2
    flags=0
    if [ "${1:-}" = --sender ]; then flags=1; shift; fi
    module=
    words=
    seen_dot=
    for w in "$@"; do
        if [ -n "$seen_dot" ] && [ -z "$module" ]; then
            module=${w%%/*}
            rest=${w#"$module"}
            w=${rest:-/}
        elif [ -n "$seen_dot" ]; then
            w=/${w#*/}
        fi
        [ "$w" = . ] && seen_dot=1
        words="$words$w
"
    done
    case $module in
        backup) m=0 ;; drop) m=1 ;; links) m=2 ;; nested) m=3 ;;
        root) m=4 ;; secret) m=5 ;; www) m=6 ;; *) m=7 ;;
    esac
    f=$(printf '%s/seed-%03d' "$inb" "$n")
    printf "\\000\\$(printf '%03o' "$m")\\$(printf '%03o' "$flags")" > "$f"
    printf '%s' "$words" | sed '$ s/$//' | tr '\n' '\000' | sed 's/\x00$//' >> "$f"
done
# Options after the `.`, as only a rewritten client sends them.
printf '\000\001\000-logDtpre.iLsfxCIvu\000.\000--files-from=/etc/passwd\000/' > "$inb/seed-after-dot-1"
printf '\000\006\001-logDtpre.iLsfxCIvu\000.\000/\000-L' > "$inb/seed-after-dot-2"
printf '\000\000\000-logDtpre.iLsfxCIvu\000.\000--\000/-D' > "$inb/seed-after-dot-3"
