// wsx/wsx.hpp - the sans-I/O core in one include.
#pragma once

#include <wsx/buffer_source.hpp>
#include <wsx/bytes.hpp>
#include <wsx/close_code.hpp>
#include <wsx/connection.hpp>
#include <wsx/connection_options.hpp>
#include <wsx/deflate.hpp>
#include <wsx/event.hpp>
#include <wsx/error.hpp>
#include <wsx/extension.hpp>
#include <wsx/frame.hpp>
#include <wsx/handshake.hpp>
#include <wsx/http.hpp>
#include <wsx/mask.hpp>
#include <wsx/output_queue.hpp>
#include <wsx/prepared_message.hpp>
#include <wsx/random.hpp>
#include <wsx/utf8.hpp>
#include <wsx/version.hpp>
