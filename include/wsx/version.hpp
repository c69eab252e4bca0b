// wsx/version.hpp - the library's version, as numbers and as a string
// (sent in the client's User-Agent).
#pragma once

#define WSX_VERSION_MAJOR 0
#define WSX_VERSION_MINOR 1
#define WSX_VERSION_PATCH 0
#define WSX_VERSION_STRING "0.1.0"
