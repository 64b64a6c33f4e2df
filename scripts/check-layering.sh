#!/usr/bin/env bash
# The floors of docs/architecture.md, checked on every #include: a folder may include headers of
# the folders below it only (core → durable, channels, sdk → gateway → broker).
#   scripts/check-layering.sh [ROOT]     exit 1 and one line per offending include when it fails
set -euo pipefail
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}

# What each folder may include, itself included.
declare -A allowed=(
  [core]="core"
  [durable]="core durable"
  [channels]="core channels"
  [sdk]="core sdk"
  [gateway]="core channels gateway"
  [broker]="core durable channels sdk gateway broker"
)

# The folder that owns a header, from its include path.
owner_of() {
  case "$1" in
    roost/core/* | roost/actor.h | roost/actor_plugin.h) echo core ;;
    roost/durable/*) echo durable ;;
    roost/channels/*) echo channels ;;
    roost/wire/* | roost/client/*) echo sdk ;;
    roost/gateway/*) echo gateway ;;
    roost/broker/* | roost/node.h) echo broker ;;
    *) echo unknown ;;
  esac
}

bad=0
checked=0
for folder in "${!allowed[@]}"; do
  [ -d "$root/$folder" ] || continue
  while IFS= read -r -d '' file; do
    checked=$((checked + 1))
    lineno=0
    while IFS= read -r line; do
      lineno=$((lineno + 1))
      [[ $line =~ ^[[:space:]]*#[[:space:]]*include[[:space:]]*[\<\"]([^\>\"]+)[\>\"] ]] || continue
      inc=${BASH_REMATCH[1]}
      if [[ $inc == *..* ]]; then
        echo "$file:$lineno: includes \"$inc\": no relative paths out of a folder"
        bad=1
        continue
      fi
      [[ $inc == roost/* ]] || continue
      owner=$(owner_of "$inc")
      if [ "$owner" = unknown ]; then
        echo "$file:$lineno: includes <$inc>, which no folder owns (add it to scripts/check-layering.sh)"
        bad=1
      elif [[ " ${allowed[$folder]} " != *" $owner "* ]]; then
        echo "$file:$lineno: $folder/ includes <$inc> of $owner/, which it may not use (may: ${allowed[$folder]})"
        bad=1
      fi
    done <"$file"
  done < <(find "$root/$folder" -type f \( -name '*.h' -o -name '*.cpp' -o -name '*.in' \) -print0)
done
if [ "$bad" -ne 0 ]; then
  echo "check-layering: FAILED"
  exit 1
fi
echo "check-layering: $checked files keep to their floors"
