# install() + install(EXPORT) + package config, so that consumers can write
#   find_package(wsx CONFIG REQUIRED)
#   target_link_libraries(app PRIVATE wsx::wsx)
include(CMakePackageConfigHelpers)

install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/wsx DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS wsx wsx_tls EXPORT wsxTargets)
if(WSX_HAS_ASIO)
  install(TARGETS wsx_asio EXPORT wsxTargets)
endif()
install(EXPORT wsxTargets NAMESPACE wsx:: DESTINATION ${CMAKE_INSTALL_DATADIR}/wsx/cmake)

configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/wsxConfig.cmake.in
  ${PROJECT_BINARY_DIR}/wsxConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_DATADIR}/wsx/cmake)
# A header-only library does not depend on the architecture it was installed from.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/wsxConfigVersion.cmake
  COMPATIBILITY SameMajorVersion ARCH_INDEPENDENT)
install(FILES ${PROJECT_BINARY_DIR}/wsxConfig.cmake ${PROJECT_BINARY_DIR}/wsxConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_DATADIR}/wsx/cmake)

# pkg-config, for builds without CMake: the headers, OpenSSL and zlib
# (architecture-independent, like the CMake package).
configure_file(${PROJECT_SOURCE_DIR}/cmake/wsx.pc.in ${PROJECT_BINARY_DIR}/wsx.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/wsx.pc DESTINATION ${CMAKE_INSTALL_DATADIR}/pkgconfig)
