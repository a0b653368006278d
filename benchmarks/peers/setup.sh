#!/usr/bin/env bash
# Create one virtualenv per peer under benchmarks/.peers/ (gitignored) and record,
# per peer, whether it installed and how: benchmarks/.peers/<name>.status holds one
# line that bench.py copies into RESULTS.md ("ok: ..." or "failed: <why>").
# Idempotent: a peer whose stamp matches its requirement is left alone.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
PEERS=.peers
mkdir -p "$PEERS"

log() { printf '%s\n' "$*" >&2; }

# make_venv NAME REQUIREMENT: the venv exists, pip is current. Returns 1 if not.
make_venv() {
    local dir="$PEERS/$1"
    if [ ! -x "$dir/bin/python" ]; then
        "$PYTHON" -m venv "$dir" || return 1
        "$dir/bin/python" -m pip install -q --upgrade pip 2>/dev/null || return 1
    fi
}

# install NAME REQUIREMENT [fallback-function]
install() {
    local name=$1 req=$2 fallback=${3:-}
    local dir="$PEERS/$name" stamp="$PEERS/$name.stamp" status="$PEERS/$name.status"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$req" ]; then
        log "$name: already installed ($req)"
        return 0
    fi
    rm -f "$stamp"
    if ! make_venv "$name"; then
        echo "failed: could not create a virtualenv with $PYTHON" >"$status"
        return 0
    fi
    log "$name: pip install $req"
    local out
    if out=$("$dir/bin/python" -m pip install -q "$req" 2>&1); then
        echo "ok: pip install '$req'" >"$status"
        echo "$req" >"$stamp"
        return 0
    fi
    local why
    why=$(printf '%s\n' "$out" | grep -E '^ERROR' | grep -v 'Ignored the following' | sed -E 's/ \(from versions: [^)]*\)//' | head -n 3 | tr '\n' ' ')
    log "$name: pip failed: $why"
    if [ -n "$fallback" ] && "$fallback" "$dir" "$why" "$status"; then
        echo "$req" >"$stamp"
        return 0
    fi
    echo "failed: pip install '$req': $why" >"$status"
}

# Prefect 3.9.1 pins certifi>=2026.10.19, a release the package index reachable here
# does not serve. certifi is only a CA bundle and the benchmarks use no network, so
# install prefect without dependencies, then its own Requires-Dist with that one pin
# relaxed, and say so in the status line.
prefect3_relaxed() {
    local dir=$1 why=$2 status=$3
    case "$why" in *certifi*) ;; *) return 1 ;; esac
    "$dir/bin/python" -m pip install -q --no-deps "prefect==3.9.1" packaging 2>/dev/null || return 1
    local reqs
    reqs=$("$dir/bin/python" - <<'PY'
import importlib.metadata as md
from packaging.requirements import Requirement
out = []
for text in md.requires("prefect") or []:
    req = Requirement(text)
    if req.marker and not req.marker.evaluate({"extra": ""}):
        continue
    if req.name == "certifi":
        req.specifier = type(req.specifier)("")
    req.marker = None
    out.append(str(req))
print("\n".join(out))
PY
) || return 1
    printf '%s\n' "$reqs" >"$dir/relaxed-requirements.txt"
    "$dir/bin/python" -m pip install -q -r "$dir/relaxed-requirements.txt" 2>/dev/null || return 1
    local have
    have=$("$dir/bin/python" -c 'import certifi; print(certifi.__version__)')
    echo "ok with one pin relaxed: pip install 'prefect==3.9.1' fails here (${why% }); installed prefect 3.9.1 with --no-deps and its own requirements except certifi>=2026.10.19 (certifi $have installed; it is a CA bundle, unused offline)" >"$status"
}

install dask "dask[distributed]"
install prefect1 "prefect==1.4.1"
install prefect3 "prefect==3.9.1" prefect3_relaxed
for name in dask prefect1 prefect3; do
    log "$name: $(cat "$PEERS/$name.status" 2>/dev/null || echo 'no status')"
done
