#!/usr/bin/env bash
# Server load benchmark: wsx's echo server beside a Boost.Beast echo server,
# driven by the same load generator, in the same run.
#
#   tests/bench/run_load.sh BUILD_DIR                  wsx vs Beast (Markdown table)
#   tests/bench/run_load.sh BUILD_DIR --uws ECHO       and uWebSockets' echo server too
#   tests/bench/run_load.sh BUILD_DIR -- COMMAND...    one server command alone
#
# BUILD_DIR is a Release build with examples and benchmarks
# (examples/echo_server, tests/bench/wsx_load_generator,
# tests/bench/wsx_beast_echo_server). A server command must print
# "listening on HOST:PORT" and serve ws:// there; give it --port 0.
# --uws takes a uWebSockets echo server built beforehand, called as
# `ECHO PORT` on a free port this script picks; nothing is fetched here.
#
# Each server runs on one thread pinned to CPU 0 and the load generator on
# CPU 1 (taskset), so the two do not compete for a core. Scenarios:
#   small      16 B text, 100 connections x 8 messages in flight
#   large      1 MiB binary, 4 connections x 2 in flight
#   handshake  connect + opening + closing handshake, 50 in parallel
# Each runs WSX_LOAD_SECONDS (5) after a 1 s warm-up, WSX_LOAD_ROUNDS (2)
# times, the servers taking turns; the table keeps each server's best round.
# Besides the rate, the table gives each server's CPU time per message and
# its inverse, messages per second of server CPU, which holds whichever side
# (server or generator) ran out of CPU first. The whole run stays under four
# minutes; servers are stopped by PID.
set -euo pipefail

usage() {
  echo "usage: $0 BUILD_DIR [-- SERVER_COMMAND...]" >&2
  exit 2
}
[[ $# -ge 1 ]] || usage
build_dir=$1
shift
seconds=${WSX_LOAD_SECONDS:-5}
rounds=${WSX_LOAD_ROUNDS:-2}
generator=$build_dir/tests/bench/wsx_load_generator
[[ -x $generator ]] || { echo "run_load.sh: no load generator at $generator" >&2; exit 2; }

uws_server=
if [[ ${1:-} == --uws ]]; then
  [[ $# -ge 2 ]] || usage
  uws_server=$2
  [[ -x $uws_server ]] || { echo "run_load.sh: $uws_server is not an executable" >&2; exit 2; }
  shift 2
fi

names=()
commands=()
if [[ $# -gt 0 ]]; then
  [[ $1 == -- ]] || usage
  shift
  [[ $# -gt 0 ]] || usage
  names+=(server)
  commands+=("$*")
else
  wsx_server=$build_dir/examples/echo_server
  beast_server=$build_dir/tests/bench/wsx_beast_echo_server
  for program in "$wsx_server" "$beast_server"; do
    [[ -x $program ]] || { echo "run_load.sh: $program is not built" >&2; exit 2; }
  done
  names+=(wsx Beast)
  # --quiet: no log line per connection (the Beast server writes none either).
  commands+=("$wsx_server --threads 1 --port 0 --no-deflate --quiet" "$beast_server --threads 1 --port 0")
  if [[ -n $uws_server ]]; then
    uws_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    names+=(uWS)
    commands+=("$uws_server $uws_port --max-secs 600")
  fi
fi

# Pin when there are two CPUs to pin to.
server_cpu=()
client_cpu=()
if command -v taskset >/dev/null && [[ $(nproc) -ge 2 ]]; then
  server_cpu=(taskset -c 0)
  client_cpu=(taskset -c 1)
else
  echo "run_load.sh: taskset or a second CPU is missing; running unpinned" >&2
fi

work=$(mktemp -d)
pids=()
stop_servers() {
  local pid
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || continue
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  pids=()
}
trap 'stop_servers; rm -rf "$work"' EXIT

# Start every server; ports[i] is where server i listens.
ports=()
for i in "${!names[@]}"; do
  log=$work/server$i.log
  # shellcheck disable=SC2086 # the command is split into words on purpose
  "${server_cpu[@]}" ${commands[$i]} >"$log" 2>&1 &
  pids+=($!)
  port=
  for _ in $(seq 100); do
    port=$(sed -n 's/^\([a-z_]*: \)\{0,1\}listening on .*:\([0-9][0-9]*\)$/\2/p' "$log" | head -n1)
    [[ -n $port ]] && break
    kill -0 "${pids[$i]}" 2>/dev/null || break
    sleep 0.1
  done
  if [[ -z $port ]]; then
    echo "run_load.sh: ${names[$i]} (${commands[$i]}) printed no 'listening on' line:" >&2
    cat "$log" >&2
    exit 1
  fi
  ports+=("$port")
done

scenarios=(small large handshake)
declare -A label=(
  [small]="16 B text, 100 conn x 8 in flight"
  [large]="1 MiB binary, 4 conn x 2 in flight"
  [handshake]="handshakes, 50 parallel"
)
declare -A options=(
  [small]="--connections 100 --in-flight 8 --size 16"
  [large]="--connections 4 --in-flight 2 --size 1M --binary"
  [handshake]="--handshakes --connections 50"
)

# CPU time (user + system, in clock ticks) a process has used so far.
cpu_ticks() {
  local stat
  stat=$(cat "/proc/$1/stat")
  # The fields after the command name, which is in parentheses.
  awk '{ print $12 + $13 }' <<<"${stat##*) }"
}
ticks_per_second=$(getconf CLK_TCK)

field() { # field NAME RESULT_LINE
  local pair
  for pair in $2; do [[ $pair == "$1="* ]] && { echo "${pair#*=}"; return; }; done
  echo 0
}

# best[scenario,i] = "rate p50 p99 mb_per_s cpu_us_each" of the best round
declare -A best
failed=0
start=$SECONDS
for scenario in "${scenarios[@]}"; do
  for round in $(seq "$rounds"); do
    order=("${!names[@]}")
    # Take turns: on even rounds the last server goes first.
    if (( round % 2 == 0 )); then
      reversed=(); for ((k=${#order[@]}-1; k>=0; k--)); do reversed+=("${order[$k]}"); done; order=("${reversed[@]}")
    fi
    for i in "${order[@]}"; do
      if (( SECONDS - start > 200 )); then
        echo "run_load.sh: out of time budget; stopping early" >&2
        break 3
      fi
      cpu_before=$(cpu_ticks "${pids[$i]}")
      # shellcheck disable=SC2086
      if ! line=$(timeout $((seconds + 60)) "${client_cpu[@]}" "$generator" --port "${ports[$i]}" \
            ${options[$scenario]} --seconds "$seconds" --warmup 1 --quiet 2>"$work/client.err"); then
        echo "run_load.sh: $scenario against ${names[$i]} FAILED:" >&2
        cat "$work/client.err" >&2
        failed=1
        continue
      fi
      if ! kill -0 "${pids[$i]}" 2>/dev/null; then
        echo "run_load.sh: ${names[$i]} died during $scenario" >&2
        failed=1
        continue
      fi
      cpu_after=$(cpu_ticks "${pids[$i]}")
      if [[ $scenario == handshake ]]; then rate=$(field handshakes_per_s "$line"); else rate=$(field msgs_per_s "$line"); fi
      # The server's CPU time per message (or handshake) over the whole run,
      # warm-up included: unlike the rate, it hardly moves when other
      # programs share the machine.
      cpu_each=$(awk -v t=$((cpu_after - cpu_before)) -v hz="$ticks_per_second" -v n="$(field total "$line")" \
        'BEGIN { if (n > 0) printf "%.2f", t / hz / n * 1e6; else print 0 }')
      entry="$rate $(field p50_us "$line") $(field p99_us "$line") $(field mb_per_s "$line") $cpu_each"
      line+=" server_cpu_us_each=$cpu_each"
      echo "  $scenario round $round ${names[$i]}: $line" >&2
      previous=${best[$scenario,$i]:-}
      if [[ -z $previous ]] || awk -v a="$rate" -v b="${previous%% *}" 'BEGIN { exit !(a > b) }'; then
        best[$scenario,$i]=$entry
      fi
    done
  done
done

# The table.
echo
echo "Load: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg), ${seconds} s per run, best of $rounds."
echo "Rates are messages (or handshakes) per second; latency is the round trip, p50/p99 in microseconds;"
echo "CPU is the server's CPU time per message (or handshake), in microseconds, and per CPU-s its inverse:"
echo "messages (or handshakes) per second of server CPU. Ratios are wsx over each other server."
echo
header="| scenario |"
rule="|---|"
for name in "${names[@]}"; do header+=" $name rate |"; rule+="---:|"; done
for name in "${names[@]:1}"; do header+=" wsx / $name rate |"; rule+="---:|"; done
for name in "${names[@]}"; do header+=" $name p50/p99 µs |"; rule+="---:|"; done
for name in "${names[@]}"; do header+=" $name CPU µs |"; rule+="---:|"; done
for name in "${names[@]}"; do header+=" $name per CPU-s |"; rule+="---:|"; done
for name in "${names[@]:1}"; do header+=" wsx / $name per CPU |"; rule+="---:|"; done
echo "$header"
echo "$rule"
for scenario in "${scenarios[@]}"; do
  row="| ${label[$scenario]} |"
  rates=()
  for i in "${!names[@]}"; do
    read -r rate p50 p99 mb cpu <<<"${best[$scenario,$i]:-0 0 0 0 0}"
    rates+=("$rate")
    if [[ $scenario == large ]]; then
      row+=" $(awk -v r="$rate" -v m="$mb" 'BEGIN { printf "%.0f (%.0f MB/s)", r, m }') |"
    else
      row+=" $(awk -v r="$rate" 'BEGIN { printf "%.0f", r }') |"
    fi
  done
  cpus=()
  for i in "${!names[@]}"; do
    read -r rate p50 p99 mb cpu <<<"${best[$scenario,$i]:-0 0 0 0 0}"
    cpus+=("$cpu")
  done
  for i in "${!names[@]}"; do
    (( i == 0 )) && continue
    row+=" $(awk -v a="${rates[0]}" -v b="${rates[$i]}" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "n/a" }') |"
  done
  for i in "${!names[@]}"; do
    read -r rate p50 p99 mb cpu <<<"${best[$scenario,$i]:-0 0 0 0 0}"
    row+=" $(awk -v a="$p50" -v b="$p99" 'BEGIN { printf "%.0f / %.0f", a, b }') |"
  done
  for i in "${!names[@]}"; do
    row+=" ${cpus[$i]} |"
  done
  for i in "${!names[@]}"; do
    row+=" $(awk -v c="${cpus[$i]}" 'BEGIN { if (c > 0) printf "%.0f", 1e6 / c; else printf "n/a" }') |"
  done
  for i in "${!names[@]}"; do
    (( i == 0 )) && continue
    row+=" $(awk -v a="${cpus[0]}" -v b="${cpus[$i]}" 'BEGIN { if (a > 0) printf "%.2f", b / a; else printf "n/a" }') |"
  done
  echo "$row"
done

# The servers must stop on SIGTERM with status 0 (the uWebSockets reference
# is only stopped).
for i in "${!names[@]}"; do
  pid=${pids[$i]}
  if [[ ${names[$i]} == uWS ]]; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    continue
  fi
  kill -TERM "$pid" 2>/dev/null || true
  status=0
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "run_load.sh: ${names[$i]} did not exit within 5 s of SIGTERM" >&2
    kill -KILL "$pid" 2>/dev/null || true
    failed=1
  fi
  wait "$pid" || status=$?
  if (( status != 0 )); then
    echo "run_load.sh: ${names[$i]} exited with status $status after SIGTERM" >&2
    failed=1
  fi
done
pids=()
exit "$failed"
