# Interoperability of the Asio adapter: examples/echo_server and
# examples/client against each other, against Python websockets and against
# Node ws (each way, with and without permessage-deflate), plus handshake
# refusals over real TCP and the server's shutdown on SIGTERM. Driven by
# run_echo_tests.py, one CTest test per case; a case whose peer is missing
# (Python websockets, node, or the ws package, which .ci/run installs into
# <build>/node with npm) is reported as skipped, with the reason.
if(NOT WSX_HAS_ASIO)
  return()
endif()
find_package(Python3 COMPONENTS Interpreter)
find_program(WSX_NODE NAMES node nodejs)
find_program(WSX_OPENSSL_COMMAND NAMES openssl)

set(wsx_echo_cases echo-ws echo-ws-no-deflate refusals shutdown
  python-client python-client-no-deflate python-server python-server-no-deflate
  node-client node-client-no-deflate node-server node-server-no-deflate)
set(wsx_echo_wss_cases echo-wss echo-wss-no-deflate python-client-wss node-client-wss)
if(NOT Python3_Interpreter_FOUND)
  foreach(case IN LISTS wsx_echo_cases wsx_echo_wss_cases)
    wsx_add_skipped_test(interop_asio_${case} "no python3")
  endforeach()
  return()
endif()
# Python websockets may live only in the system's python3 (a virtual
# environment earlier on the PATH may lack it): prefer one that has it.
function(wsx_echo_python_has_websockets result candidate)
  execute_process(COMMAND "${candidate}" -c "import websockets"
    RESULT_VARIABLE status OUTPUT_QUIET ERROR_QUIET TIMEOUT 30)
  if(NOT status EQUAL 0)
    set(${result} FALSE PARENT_SCOPE)
  endif()
endfunction()
find_program(WSX_ECHO_PYTHON NAMES python3 VALIDATOR wsx_echo_python_has_websockets)
set(wsx_echo_python ${Python3_EXECUTABLE})
if(WSX_ECHO_PYTHON)
  set(wsx_echo_python ${WSX_ECHO_PYTHON})
endif()

if(WSX_OPENSSL_COMMAND)
  list(APPEND wsx_echo_cases ${wsx_echo_wss_cases})
else()
  foreach(case IN LISTS wsx_echo_wss_cases)
    wsx_add_skipped_test(interop_asio_${case} "no openssl command line tool (apt-get install openssl)")
  endforeach()
endif()
if(WSX_NODE)
  set(wsx_node_argument --node ${WSX_NODE})
else()
  message(STATUS "wsx: no node: the interop_asio_node-* tests are skipped (apt-get install nodejs npm)")
endif()
foreach(case IN LISTS wsx_echo_cases)
  add_test(NAME interop_asio_${case}
    COMMAND ${wsx_echo_python} ${CMAKE_CURRENT_SOURCE_DIR}/run_echo_tests.py ${case}
      --bin $<TARGET_FILE_DIR:echo_server>
      ${wsx_node_argument} --node-modules ${PROJECT_BINARY_DIR}/node/node_modules)
  set_tests_properties(interop_asio_${case} PROPERTIES TIMEOUT 300 SKIP_RETURN_CODE 77)
endforeach()
