#!/usr/bin/env bash
# Puts the default training corpus at data/corpus.txt and prints which corpus was chosen.
#
# - If the user put enwik8 at data/enwik8 (or data/enwik8.zip / data/enwik8.gz), that is used:
#   it is unpacked to data/enwik8 when needed and data/corpus.txt becomes a copy of it.
# - Otherwise the corpus is Debian's python3.11-doc reST sources (installed by scripts/setup.sh):
#     find /usr/share/doc/python3.11/html/_sources -name '*.txt' | LC_ALL=C sort | xargs cat
#   11,048,275 bytes, sha256 4f69e611...1501 (the reference training recipe's corpus); a warning
#   is printed when the installed documentation gives something else.
# Writes are atomic (a temporary file renamed into place). Usage: scripts/get_corpus.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${1:-data}
mkdir -p "$OUT_DIR"
OUT="$OUT_DIR/corpus.txt"
EXPECTED_SHA=4f69e6115088c2444e0059d0973967db9dbc27ae3405343e26fac074aa501701
EXPECTED_BYTES=11048275
SRC=/usr/share/doc/python3.11/html/_sources

install_atomic() {  # install_atomic TMP DEST
  mv -f "$1" "$2"
}

if [ ! -f "$OUT_DIR/enwik8" ] && [ -f "$OUT_DIR/enwik8.zip" ]; then
  tmpdir=$(mktemp -d "$OUT_DIR/.enwik8.XXXXXX")
  unzip -q -o "$OUT_DIR/enwik8.zip" enwik8 -d "$tmpdir"
  install_atomic "$tmpdir/enwik8" "$OUT_DIR/enwik8"
  rmdir "$tmpdir"
elif [ ! -f "$OUT_DIR/enwik8" ] && [ -f "$OUT_DIR/enwik8.gz" ]; then
  gzip -dc "$OUT_DIR/enwik8.gz" > "$OUT_DIR/enwik8.tmp"
  install_atomic "$OUT_DIR/enwik8.tmp" "$OUT_DIR/enwik8"
fi

if [ -f "$OUT_DIR/enwik8" ]; then
  cp "$OUT_DIR/enwik8" "$OUT.tmp"
  install_atomic "$OUT.tmp" "$OUT"
  echo "corpus: enwik8 ($OUT_DIR/enwik8, $(wc -c < "$OUT") bytes) -> $OUT"
  exit 0
fi

if [ ! -d "$SRC" ]; then
  echo "get_corpus: $SRC is missing; install python3.11-doc (scripts/setup.sh) or put enwik8 at $OUT_DIR/enwik8" >&2
  exit 1
fi
find "$SRC" -name '*.txt' | LC_ALL=C sort | xargs cat > "$OUT.tmp"
install_atomic "$OUT.tmp" "$OUT"
bytes=$(wc -c < "$OUT")
sha=$(sha256sum "$OUT" | cut -d' ' -f1)
if [ "$sha" != "$EXPECTED_SHA" ] || [ "$bytes" != "$EXPECTED_BYTES" ]; then
  echo "get_corpus: warning: $OUT has $bytes bytes, sha256 $sha;" \
       "the reference corpus has $EXPECTED_BYTES bytes, sha256 $EXPECTED_SHA (different python3.11-doc version?)" >&2
fi
echo "corpus: python3.11-doc reST sources ($bytes bytes, sha256 $sha) -> $OUT"
