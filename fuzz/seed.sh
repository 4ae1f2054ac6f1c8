#!/usr/bin/env bash
# Fills fuzz/corpus/<target>/ with seed inputs before a fuzz run:
#   messages (parse, thread, classify, prepare): the shared mail corpus
#     ($TRIAGED_CORPUS, default ../shared/corpus beside the checkout), the
#     example messages beside the routing rules, and fuzz/seeds/message/;
#   config: deploy/triaged.example.toml and fuzz/seeds/config/;
#   rules: every file of routing-rules/ (the rule files, and the case files
#     as other TOML), the shipped set joined into one input (files separated by
#     form feeds, as the rules target splits them), and fuzz/seeds/rules/.
# Messages over SEED_MAX_BYTES (default 1 MiB, the -max_len of the runs) are
# left out: the corpus's 3 MB enclosed-endless.eml is the known deep-nesting
# stack overflow, and libFuzzer would only truncate them.
# Idempotent: files are named by content hash; what is already there stays.
set -euo pipefail
fuzz="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$fuzz")"
shared="${TRIAGED_CORPUS:-$repo/../shared/corpus}"
max="${SEED_MAX_BYTES:-1048576}"

add() { # add <target> <file>...
    local dir="$fuzz/corpus/$1" f h
    shift
    mkdir -p "$dir"
    for f in "$@"; do
        [ -f "$f" ] || continue
        if [ "$(stat -c %s "$f")" -gt "$max" ]; then
            continue
        fi
        h="$(sha1sum "$f" | cut -c1-40)"
        [ -e "$dir/$h" ] || cp "$f" "$dir/$h"
    done
}

messages=("$fuzz"/seeds/message/* "$repo"/routing-rules/tests/messages/*)
if [ -d "$shared" ]; then
    while IFS= read -r -d '' f; do messages+=("$f"); done \
        < <(find "$shared" -type f -name '*.eml' -print0 | sort -z)
else
    echo "seed.sh: no shared corpus at $shared; using the committed seeds only" >&2
fi
for t in parse thread classify prepare; do
    add "$t" "${messages[@]}"
done

add config "$repo"/deploy/triaged.example.toml "$fuzz"/seeds/config/*

joined="$(mktemp)"
trap 'rm -f "$joined"' EXIT
first=1
for f in "$repo"/routing-rules/*.toml; do
    [ "$first" = 1 ] || printf '\f' >> "$joined"
    first=0
    cat "$f" >> "$joined"
done
add rules "$repo"/routing-rules/*.toml "$repo"/routing-rules/tests/*.toml \
    "$fuzz"/seeds/rules/* "$joined"

for t in parse thread classify prepare config rules; do
    printf '%s: %s seeds\n' "$t" "$(find "$fuzz/corpus/$t" -type f | wc -l)"
done
