// example_options.hpp - what the example programs share: reading their
// command lines (--host/--port/--threads, numbers in a range, milliseconds; a
// bad one prints what is wrong with which option and the usage, and exits 2;
// --help prints the usage and what each option does, and exits 0) and
// printing "listening on HOST:PORT".
#pragma once

#include <wsx/asio/config.hpp>
#include <wsx/asio/listen.hpp>

#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <system_error>

namespace example {

// A program's name, usage text and what each option does (both ending in
// a newline).
struct usage_text {
    const char* name;
    const char* text;
    const char* options = "";
};

// Prints "PROGRAM: PROBLEM" and the usage, and exits 2 (bad usage).
[[noreturn]] inline void usage(const usage_text& program, const std::string& problem) {
    std::fprintf(stderr, "%s: %s\n%s(--help says what each option does)\n", program.name, problem.c_str(),
                 program.text);
    std::exit(2);
}

// --help: the usage and the options, on standard output; exits 0.
[[noreturn]] inline void help(const usage_text& program) {
    std::printf("%s\n%s", program.text, program.options);
    std::exit(0);
}

// What --host, --port and --threads do, for a server's options text.
#define EXAMPLE_SERVER_OPTIONS(port)                                                                       \
    "  --host HOST        the address to listen on, or a name (localhost: each of its addresses);\n"      \
    "                     default 127.0.0.1 (0.0.0.0 or :: opens it to the network)\n"                   \
    "  --port PORT        the port, 0-65535 (0: a free one, printed); default " port "\n"                \
    "  --threads N        threads running the server, 1-256; default 1\n"

// Where a server listens, and on how many threads (--host, --port, --threads).
struct server_settings {
    explicit server_settings(std::uint16_t default_port) : port(default_port) {}
    std::string host = "127.0.0.1";
    std::uint16_t port;
    unsigned threads = 1;
};

// argv, one argument at a time: next() moves on, current() is the option,
// and value() takes the argument after it as that option's value.
class arguments {
public:
    arguments(int argc, char** argv, usage_text program) : argc_(argc), argv_(argv), usage_(program) {}

    bool next() noexcept { return ++index_ < argc_; }
    std::string_view current() const noexcept { return argv_[index_]; }

    std::string_view value() {
        if (index_ + 1 >= argc_) fail(std::string(current()) + " needs a value");
        return argv_[++index_];
    }

    // The value as a whole decimal number from lowest to highest.
    template <class Number>
    Number number(Number lowest, Number highest) {
        const std::string option(current());
        const std::string_view text = value();
        Number parsed{};
        const auto result = std::from_chars(text.data(), text.data() + text.size(), parsed);
        if (result.ec != std::errc() || result.ptr != text.data() + text.size() || parsed < lowest || parsed > highest)
            fail(option + ": " + std::string(text) + " is not a whole number from " + std::to_string(lowest) + " to " +
                 std::to_string(highest));
        return parsed;
    }

    // Milliseconds, up to a day; 0 turns a timer off.
    std::chrono::milliseconds milliseconds() {
        return std::chrono::milliseconds(number<std::int64_t>(0, 24 * 60 * 60 * 1000));
    }

    // --host, --port and --threads, which every server takes: true when the
    // current option was one of them (and its value is taken).
    bool server_option(server_settings& server) {
        const std::string_view arg = current();
        if (arg == "--host") server.host = std::string(value());
        else if (arg == "--port") server.port = number<std::uint16_t>(0, 65535);
        else if (arg == "--threads") server.threads = number<unsigned>(1, 256);
        else return false;
        return true;
    }

    // An option the program does not know: --help and -h ask for the usage.
    [[noreturn]] void unknown_option() const {
        const std::string_view arg = current();
        if (arg == "--help" || arg == "-h") help(usage_);
        fail("unknown option " + std::string(arg));
    }

    [[noreturn]] void fail(const std::string& problem) const { usage(usage_, problem); }

private:
    int argc_;
    char** argv_;
    usage_text usage_;
    int index_ = 0;
};

using wsx::endpoint_text; // HOST:PORT, with an IPv6 address in brackets

// The line tests and scripts wait for before they connect.
inline void print_listening(const wsx::net::ip::tcp::endpoint& endpoint) {
    std::printf("listening on %s\n", endpoint_text(endpoint).c_str());
    std::fflush(stdout);
}

} // namespace example
