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
