// wsx/asio/impl/src.hpp - the compiled part of the Asio adapter. With
// WSX_SEPARATE_COMPILATION defined everywhere, include this in exactly one
// translation unit of the program (the wsx::asio_compiled CMake target is
// that unit); see wsx/asio/config.hpp.
#pragma once

#if !defined(WSX_SEPARATE_COMPILATION)
#error "wsx/asio/impl/src.hpp is for WSX_SEPARATE_COMPILATION builds"
#endif

#include <wsx/asio/impl/client.ipp>
#include <wsx/asio/impl/server.ipp>
