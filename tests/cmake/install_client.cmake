# `cmake --install` installs examples/client as wsx-client, and the installed
# program runs: --help exits 0 and prints its usage.
#   cmake -DBUILD=build-dir -DPREFIX=scratch-prefix -P install_client.cmake
cmake_minimum_required(VERSION 3.20)
file(REMOVE_RECURSE "${PREFIX}")
execute_process(COMMAND ${CMAKE_COMMAND} --install "${BUILD}" --prefix "${PREFIX}" --component wsx-client
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 60)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cmake --install failed (${rc}): ${out}${err}")
endif()
include(GNUInstallDirs)
set(program "${PREFIX}/${CMAKE_INSTALL_BINDIR}/wsx-client")
if(NOT EXISTS "${program}")
  message(FATAL_ERROR "no ${program} after cmake --install: ${out}")
endif()
execute_process(COMMAND "${program}" --help RESULT_VARIABLE rc OUTPUT_VARIABLE help ERROR_VARIABLE err TIMEOUT 10)
if(NOT rc EQUAL 0 OR NOT help MATCHES "usage")
  message(FATAL_ERROR "${program} --help exited with ${rc}: ${help}${err}")
endif()
string(REGEX MATCH "usage:[^\n]*" first "${help}")
message(STATUS "installed ${program}: ${first}")
file(REMOVE_RECURSE "${PREFIX}")
