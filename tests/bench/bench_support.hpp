// tests/bench/bench_support.hpp - process plumbing for the benchmarks that
// run a wsx::serve() server in a child process (so that the server's memory
// and CPU are apart from the clients'), and hold many sockets open.
#pragma once

#include <wsx/asio/server.hpp>

#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <string_view>

namespace wsx::bench {

// A "--name" switch that turns a flag on, and a "--name N" option that sets a count.
struct flag_option {
    std::string_view name;
    bool& value;
};
struct count_option {
    std::string_view name;
    std::size_t& value;
};

// Reads argv into the options given. Anything else, or a count without its
// number, prints `usage` and exits with status 2.
inline void parse_command_line(int argc, char** argv, const char* usage, std::initializer_list<flag_option> flags,
                               std::initializer_list<count_option> counts) {
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        const auto named_arg = [&](const auto& option) { return option.name == arg; };
        if (const auto flag = std::find_if(flags.begin(), flags.end(), named_arg); flag != flags.end()) {
            flag->value = true;
            continue;
        }
        const auto count = std::find_if(counts.begin(), counts.end(), named_arg);
        if (count == counts.end() || i + 1 >= argc) {
            std::fprintf(stderr, "usage: %s\n", usage);
            std::exit(2);
        }
        const std::string_view value = argv[++i];
        std::size_t n = 0;
        std::from_chars(value.data(), value.data() + value.size(), n);
        count->value = n;
    }
}

// Many connections need many descriptors: the soft limit goes up to the hard one.
inline void raise_file_limit() {
    rlimit limit{};
    getrlimit(RLIMIT_NOFILE, &limit);
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
}

// In the child: tells the parent the server's port through `port_pipe`, then
// serves until SIGTERM and ends the process.
[[noreturn]] inline void serve_until_terminated(server& running, int port_pipe) {
    const std::uint16_t port = running.port();
    if (write(port_pipe, &port, sizeof port) != sizeof port) std::_Exit(1);
    close(port_pipe);
    net::signal_set signals(running.get_executor(), SIGTERM);
    signals.async_wait([&](const net_error_code&, int) { running.stop(); });
    running.wait();
    std::_Exit(0);
}

// A server running in a child process; port is 0 when it could not start.
struct child_server {
    pid_t pid = -1;
    std::uint16_t port = 0;
};

// Forks; the child calls run_server(port_pipe), which starts a server and
// ends in serve_until_terminated. The parent waits for the port.
template <class RunServer>
child_server fork_server(RunServer run_server) {
    child_server child;
    int fds[2];
    if (pipe(fds) != 0) return child;
    child.pid = fork();
    if (child.pid < 0) return child;
    if (child.pid == 0) {
        close(fds[0]);
        run_server(fds[1]);
        std::_Exit(1); // run_server ends the process itself
    }
    close(fds[1]);
    std::uint16_t port = 0;
    if (read(fds[0], &port, sizeof port) == sizeof port) child.port = port;
    close(fds[0]);
    return child;
}

// Stops the child's server with SIGTERM and reaps the child.
inline void stop_server(const child_server& child) {
    kill(child.pid, SIGTERM);
    int status = 0;
    waitpid(child.pid, &status, 0);
}

// The whole run of such a benchmark: raises the file limit, forks the server
// (see fork_server), runs clients(child) here, then stops the server.
// Returns main's exit status: 1 when the server did not start.
template <class RunServer, class RunClients>
int run_beside_child_server(RunServer run_server, RunClients clients) {
    raise_file_limit();
    const child_server child = fork_server(run_server);
    if (child.port == 0) return 1;
    clients(child);
    stop_server(child);
    return 0;
}

} // namespace wsx::bench
