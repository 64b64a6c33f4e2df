#!/usr/bin/env bash
# The floors of docs/architecture.md, checked on every #include: a folder may include headers of
# the folders below it only (core → durable, channels, sdk → gateway → broker), and within broker/
# a room may include the rooms below it only (push, objects → router → mesh; endpoint; → node).
#   scripts/check-layering.sh [ROOT]     exit 1 and one line per offending include when it fails
set -euo pipefail
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}

below_broker="core durable channels sdk gateway"
# What each folder may include, itself included.
declare -A allowed=(
  [core]="core"
  [durable]="core durable"
  [channels]="core channels"
  [sdk]="core sdk"
  [gateway]="core channels gateway"
  [broker/push]="$below_broker broker/push"
  [broker/objects]="$below_broker broker/objects"
  [broker/router]="$below_broker broker/objects broker/push broker/router"
  [broker/mesh]="$below_broker broker/objects broker/push broker/router broker/mesh"
  [broker/endpoint]="$below_broker broker/endpoint"
  [broker/node]="$below_broker broker/objects broker/push broker/router broker/mesh broker/endpoint broker/node"
)
rooms="push objects router mesh endpoint node"

# The folder that owns a header, from its include path (a broker header: the room whose include/
# holds it).
owner_of() {
  case "$1" in
    roost/core/* | roost/actor.h | roost/actor_plugin.h) echo core ;;
    roost/durable/*) echo durable ;;
    roost/channels/*) echo channels ;;
    roost/wire/* | roost/client/*) echo sdk ;;
    roost/gateway/*) echo gateway ;;
    roost/broker/* | roost/node.h)
      for room in $rooms; do
        [ -f "$root/broker/$room/include/$1" ] && { echo "broker/$room"; return; }
      done
      echo broker ;;
    *) echo unknown ;;
  esac
}

bad=0
checked=0
if [ -d "$root/broker" ]; then
  for f in "$root"/broker/*; do
    [ -d "$f" ] || continue
    room=${f#"$root"/}
    if [ -z "${allowed[$room]+x}" ]; then
      echo "$room: a room scripts/check-layering.sh does not know (give it a floor)"
      bad=1
    fi
  done
fi
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
