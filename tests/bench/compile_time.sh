#!/usr/bin/env bash
# Compile time of a serve() echo server, beside Boost.Beast, in one run.
#
#   tests/bench/compile_time.sh [RUNS]        (default 2 runs of each)
#
# Times `CXX -std=c++20 -O2 -c` (CXX defaults to g++) of:
#   wsx header-only   examples/readme_serve.cpp, everything inline
#   wsx compiled      the same file with WSX_SEPARATE_COMPILATION: serve()
#                     and its machinery come from wsx::asio_compiled
#   wsx library       that library's one translation unit (compiled once
#                     per build, not per program)
#   Beast             tests/bench/beast_echo_server.cpp (Boost.Beast's echo
#                     server, the same job)
# and prints a Markdown table: wall seconds of each run, peak memory, and
# each form's best against Beast's best. Nothing else should run meanwhile.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
runs=${1:-2}
cxx=${CXX:-g++}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '#include <wsx/asio/impl/src.hpp>\n' >"$work/library.cpp"

# time_one NAME FLAGS... SOURCE: prints "seconds kilobytes".
time_one() {
  local source=${*: -1}
  /usr/bin/time -f '%e %M' -o "$work/time" "$cxx" -std=c++20 -O2 -I"$root/include" "${@:1:$#-1}" \
    -c "$source" -o "$work/out.o"
  cat "$work/time"
}

declare -A best memory times
measure() {
  local name=$1
  shift
  local i result seconds kb
  best[$name]=
  times[$name]=
  for ((i = 1; i <= runs; i++)); do
    result=$(time_one "$@")
    seconds=${result% *}
    kb=${result#* }
    times[$name]+="${times[$name]:+, }$seconds"
    memory[$name]=$kb
    if [[ -z ${best[$name]} ]] || awk "BEGIN{exit !($seconds < ${best[$name]})}"; then best[$name]=$seconds; fi
  done
}

measure header_only "$root/examples/readme_serve.cpp"
measure compiled -DWSX_SEPARATE_COMPILATION "$root/examples/readme_serve.cpp"
measure library -DWSX_SEPARATE_COMPILATION "$work/library.cpp"
measure beast "$here/beast_echo_server.cpp"

echo "| translation unit | wall s ($runs runs) | peak MB | best / Beast's best |"
echo "|---|---|---:|---:|"
row() {
  local ratio
  ratio=$(awk "BEGIN{printf \"%.2f\", ${best[$2]} / ${best[beast]}}")
  echo "| $1 | ${times[$2]} | $((memory[$2] / 1024)) | $ratio |"
}
row "wsx serve() echo, header-only" header_only
row "wsx serve() echo, WSX_SEPARATE_COMPILATION" compiled
row "wsx::asio_compiled (once per build)" library
row "Boost.Beast echo" beast
