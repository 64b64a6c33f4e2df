#!/usr/bin/env bash
# No include circle (issue 27) between components: a public header (under an include/ folder) and
# the sources whose first #include names it in quotes, or named after it (x.h with x.cpp, or
# mesh_router.h with mesh_gather.cpp). A private header (under src/) is part of whoever includes
# it: an include of one stands for the public headers it reaches. A component that needs one that needs it back takes
# an interface instead (as the LocalRouter takes core's MeshView, not the mesh's Mesh).
#   scripts/check-circles.sh [ROOT]    exit 1 and the components of each circle when it fails
set -euo pipefail
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$root"
folders=(core durable channels sdk gateway broker bench examples)

mapfile -t incdirs < <(find "${folders[@]}" -type d -name include -not -path '*/node_modules/*' 2>/dev/null)
mapfile -t files < <(find "${folders[@]}" -type f \( -name '*.h' -o -name '*.cpp' \) \
  -not -path '*/node_modules/*' 2>/dev/null | sort)

resolve() {  # includer, include → the project file it names, or nothing
  local from=$1 inc=$2 d
  if [ -f "$(dirname "$from")/$inc" ]; then
    echo "$(dirname "$from")/$inc"
    return
  fi
  for d in "${incdirs[@]}"; do
    [ -f "$d/$inc" ] && { echo "$d/$inc"; return; }
  done
  return 0
}

edges=$(mktemp)
trap 'rm -f "$edges"' EXIT
for f in "${files[@]}"; do
  component=$f
  if [[ $f == *.cpp ]]; then  # or, failing that, to the public header of its name in its folder
    own=$(find "$(dirname "$(dirname "$f")")/include" -name "$(basename "${f%.cpp}").h" 2>/dev/null | head -1 || true)
    [ -n "$own" ] && component=$own
  fi
  first=1
  while IFS= read -r line; do
    inc=${line:1}
    target=$(resolve "$f" "$inc")
    if [ "$first" = 1 ] && [[ $f == *.cpp ]] && [ "${line:0:1}" = '"' ] && [[ $target == */include/* ]]; then
      component=$target  # a source belongs to the public header it includes first
      first=0
      continue
    fi
    first=0
    [ -n "$target" ] && [ "$target" != "$component" ] && echo "$component $target" >>"$edges"
  done < <(sed -n -E 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*([<"])([^>"]+)[>"].*/\1\2/p' "$f")
done

# Private headers folded into their includers: each component's edges to the public headers it
# reaches through private ones.
public_edges=$(mktemp)
trap 'rm -f "$edges" "$public_edges"' EXIT
awk '
  function private(f) { return f !~ /\/include\// }
  function reach(from, node,    i, n, t) {
    if ((from SUBSEP node) in seen) return
    seen[from, node] = 1
    n = split(out[node], t, " ")
    for (i = 1; i <= n; i++) {
      if (private(t[i])) reach(from, t[i])
      else if (t[i] != from) print from, t[i]
    }
  }
  { out[$1] = out[$1] " " $2; nodes[$1] = 1 }
  END { for (a in nodes) if (!private(a) || a ~ /\.cpp$/) reach(a, a) }
' "$edges" | sort -u >"$public_edges"
edges=$public_edges

if ! out=$(tsort "$edges" 2>&1 >/dev/null) || [ -n "$out" ]; then
  echo "$out" | sed -E 's/^(tsort: )?[^:]*: input contains a loop:/a circle:/; s/^tsort: /  /'
  echo "check-circles: FAILED (a component includes one that includes it back)"
  exit 1
fi
echo "check-circles: ${#files[@]} files, no include circle"
