# Sourced by the benchmarks that read Quoref passages: `quoref_data N FLAG` prints the
# file to read N passages from. The full extract when there is one; the committed
# first 300 passages when N fits in them (the extract's source package is no longer
# served); otherwise it tries the extract and stops with what to do (FLAG names the
# option that sets N, for the message).
quoref_data() {
  local n="$1" flag="$2" full="$CACHE/data/quoref.jsonl"
  if [ -f "$full" ]; then
    echo "$full"
  elif [ "$n" -le 300 ]; then
    echo "using $ROOT/tests/data/quoref_300.jsonl (the first 300 Quoref passages, committed)" >&2
    echo "$ROOT/tests/data/quoref_300.jsonl"
  elif python3 "$ROOT/scripts/extract_quoref.py" >&2; then
    echo "$full"
  else
    echo "error: $full is missing and could not be extracted; run with $flag 300 or fewer to use the committed tests/data/quoref_300.jsonl" >&2
    return 1
  fi
}
