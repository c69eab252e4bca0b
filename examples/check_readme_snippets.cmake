# Fails unless README.md holds each snippet file verbatim, so the README's
# examples are the ones the build compiles.
#   cmake -DREADME=README.md "-DSNIPPETS=a.cpp|b.cpp" -P check_readme_snippets.cmake
file(READ "${README}" readme)
string(REPLACE "|" ";" snippets "${SNIPPETS}")
foreach(snippet IN LISTS snippets)
  file(READ "${snippet}" code)
  string(STRIP "${code}" code)
  string(FIND "${readme}" "${code}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "README.md does not hold ${snippet} verbatim: update the README")
  endif()
endforeach()
message(STATUS "README snippets match")
