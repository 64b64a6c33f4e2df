# Sourced by scripts that start `roost serve --http-listen 127.0.0.1:0 … >LOG`: prints the port the
# gateway took, from its log line (waits up to 5 s; nothing printed if it never came).
#   port=$(roost_port "$log")
roost_port() {
  local p=
  for _ in $(seq 100); do
    p=$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$1" 2>/dev/null | grep -o '[0-9]*$' || true)
    [ -n "$p" ] && break
    sleep 0.05
  done
  echo "$p"
}
