# Flags for wsx's own targets only (tests, examples, benchmarks, fuzzers);
# never attached to wsx::wsx, so consumers keep their own warning policy.
add_library(wsx_project_options INTERFACE)
target_compile_options(wsx_project_options INTERFACE -Wall -Wextra -Wpedantic -Werror)
if(WSX_SANITIZE)
  target_compile_options(wsx_project_options INTERFACE
    -fsanitize=${WSX_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  target_link_options(wsx_project_options INTERFACE -fsanitize=${WSX_SANITIZE})
  # GCC's ThreadSanitizer cannot instrument std::atomic_thread_fence, which
  # Asio uses, and says so with -Wtsan: a note, not an error, for us.
  if(WSX_SANITIZE MATCHES "thread" AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    target_compile_options(wsx_project_options INTERFACE -Wno-tsan)
  endif()
endif()
