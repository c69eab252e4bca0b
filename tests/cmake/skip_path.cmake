# cmake -DWSX_SOURCE_DIR=... -DWORK_DIR=... [-DCXX=...] -P skip_path.cmake
# A machine without the interop peers: configures wsx with node, chromium
# and valgrind hidden, runs their tests, and fails unless CTest reports each
# one as skipped (none failed, none left out).
file(REMOVE_RECURSE ${WORK_DIR})
execute_process(
  COMMAND ${CMAKE_COMMAND} -S ${WSX_SOURCE_DIR} -B ${WORK_DIR} -DCMAKE_CXX_COMPILER=${CXX}
    -DWSX_BUILD_BENCHMARKS=OFF -DWSX_INSTALL=OFF
    -DWSX_NODE= -DWSX_CHROMIUM= -DWSX_CHROMEDRIVER= -DWSX_VALGRIND=
  RESULT_VARIABLE result OUTPUT_VARIABLE configure_output ERROR_VARIABLE configure_output)
if(NOT result EQUAL 0)
  message(FATAL_ERROR "configure failed (${result}):\n${configure_output}")
endif()

set(hidden interop_asio_node-client interop_asio_node-client-no-deflate
  interop_asio_node-server interop_asio_node-server-no-deflate
  interop_browser conformance_echo_server_valgrind)
list(JOIN hidden "|" pattern)
execute_process(
  COMMAND ${CMAKE_CTEST_COMMAND} --test-dir ${WORK_DIR} -R "^(${pattern})$"
  RESULT_VARIABLE result OUTPUT_VARIABLE ctest_output ERROR_VARIABLE ctest_output)
message("${ctest_output}")
if(NOT result EQUAL 0)
  message(FATAL_ERROR "ctest failed (${result})")
endif()
foreach(test IN LISTS hidden)
  if(NOT ctest_output MATCHES "${test} \\(Skipped\\)")
    message(FATAL_ERROR "${test} was not reported as skipped")
  endif()
endforeach()
