// wsx/asio/impl/server.ipp - serve()'s machinery: the listening loop, the
// handshake of each connection, the handler or callbacks, stop(). Inline
// through <wsx/asio/server.hpp>, or compiled once with
// WSX_SEPARATE_COMPILATION (see wsx/asio/config.hpp).
#pragma once

#include <wsx/asio/async_stream.hpp>
#include <wsx/asio/config.hpp>
#include <wsx/asio/detail/stream_backend.hpp>
#include <wsx/asio/listen.hpp>
#include <wsx/asio/server.hpp>
#include <wsx/asio/ssl.hpp>
#include <wsx/asio/websocket.hpp>
#include <wsx/connection.hpp>
#include <wsx/error.hpp>
#include <wsx/handshake.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

namespace wsx {
namespace detail {


class server_state : public std::enable_shared_from_this<server_state> {
public:
    server_state(net::any_io_executor executor, connection_handler handler, message_handler callbacks,
                 server_options options, bool use_strands)
        : executor_(executor), acceptor_strand_(net::make_strand(executor)),
          done_timer_(acceptor_strand_), handler_(std::move(handler)), callbacks_(std::move(callbacks)),
          options_(std::move(options)),
          use_strands_(use_strands) {
        options_.connection.streaming = false;
        if (options_.connection.buffers == nullptr) options_.connection.buffers = thread_buffers();
        shared_connection_options_ = std::make_shared<const connection_options>(options_.connection);
        done_timer_.expires_at(net::steady_timer::time_point::max());
    }

    // Every address of `host` (a name or an address; wsx/asio/listen.hpp).
    void listen(const std::string& host, std::uint16_t port) {
        listen_options how;
        how.reuse_address = options_.reuse_address;
        how.backlog = options_.backlog;
        acceptors_ = open_acceptors(acceptor_strand_, host, port, how);
        local_ = acceptors_.front().local_endpoint();
        for (net::ip::tcp::acceptor& acceptor : acceptors_)
            net::co_spawn(acceptor_strand_, accept_loop(shared_from_this(), acceptor), net::detached);
    }

    net::ip::tcp::endpoint local_endpoint() const { return local_; }
    std::size_t connections() const noexcept { return active_.load(); }
    const server_options& options() const noexcept { return options_; }
    bool stopping() const noexcept { return stopping_.load(); }

    // Graceful stop, on the acceptor's strand; completes when every session
    // ended (or was dropped after the timeout).
    net::awaitable<void> stop(std::shared_ptr<server_state> self) {
        co_await net::dispatch(acceptor_strand_, net::use_awaitable);
        if (!stopping_.exchange(true)) {
            net_error_code ignored;
            for (net::ip::tcp::acceptor& acceptor : acceptors_) acceptor.close(ignored);
            log(log_level::info, "stopping: closing " + std::to_string(active_.load()) + " connection(s)");
            for_each_session([](const std::shared_ptr<websocket_backend>& b, bool open) {
                if (open) {
                    net::post(b->executor(), [b] { b->start_close(close_code::going_away, "server shutting down"); });
                } else {
                    net::post(b->executor(), [b] { b->abort(); });
                }
            });
        }
        const auto deadline = std::chrono::steady_clock::now() + options_.shutdown_timeout;
        bool dropped = false;
        for (;;) {
            if (sessions_left() == 0) break;
            if (std::chrono::steady_clock::now() >= deadline) {
                if (dropped) break; // a handler that ignores the end of its connection
                dropped = true;
                log(log_level::warning, "shutdown timeout: dropping " + std::to_string(sessions_left()) + " connection(s)");
                for_each_session([](const std::shared_ptr<websocket_backend>& b, bool) {
                    net::post(b->executor(), [b] { b->abort(); });
                });
                // Give the handlers a moment to see their connection end.
                done_timer_.expires_after(std::chrono::milliseconds(500));
            } else {
                done_timer_.expires_at(deadline);
            }
            net_error_code ec;
            co_await done_timer_.async_wait(net::redirect_error(net::use_awaitable, ec));
        }
        {
            std::lock_guard<std::mutex> lock(stop_mutex_);
            stopped_ = true;
        }
        stop_cv_.notify_all();
        (void)self;
    }

    // Blocks until a stop() is over.
    void wait_stopped() {
        std::unique_lock<std::mutex> lock(stop_mutex_);
        stop_cv_.wait(lock, [this] { return stopped_; });
    }

    void log(log_level level, const std::string& message) const {
        if (options_.log) options_.log(level, message);
    }

private:
    struct session_entry {
        std::weak_ptr<websocket_backend> backend;
        bool open = false;
    };

    template <class Visit>
    void for_each_session(Visit visit) {
        std::vector<std::pair<std::shared_ptr<websocket_backend>, bool>> live;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            for (auto& [id, entry] : sessions_)
                if (auto b = entry.backend.lock()) live.emplace_back(std::move(b), entry.open);
        }
        for (auto& [b, open] : live) visit(b, open);
    }

    std::size_t sessions_left() {
        std::lock_guard<std::mutex> lock(mutex_);
        return sessions_.size();
    }

    void add_session(std::uint64_t id, const std::shared_ptr<websocket_backend>& backend) {
        std::lock_guard<std::mutex> lock(mutex_);
        sessions_.emplace(id, session_entry{backend, false});
    }
    // Marks it open; false when the server is stopping (close it then).
    bool mark_open(std::uint64_t id) {
        std::lock_guard<std::mutex> lock(mutex_);
        auto it = sessions_.find(id);
        if (it != sessions_.end()) it->second.open = true;
        return !stopping_.load();
    }
    void remove_session(std::uint64_t id) {
        bool last = false;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            sessions_.erase(id);
            last = sessions_.empty();
        }
        if (last && stopping_.load())
            net::post(acceptor_strand_, [self = shared_from_this()] { self->done_timer_.cancel(); });
    }

    net::awaitable<void> accept_loop(std::shared_ptr<server_state> self, net::ip::tcp::acceptor& acceptor) {
        for (;;) {
            net::any_io_executor executor = executor_;
            if (use_strands_) executor = net::make_strand(executor_);
            net::ip::tcp::socket socket(executor);
            net_error_code ec;
            net::ip::tcp::endpoint peer; // from accept itself: no getpeername() per connection
            co_await acceptor.async_accept(socket, peer, net::redirect_error(net::use_awaitable, ec));
            if (stopping_.load() || !acceptor.is_open()) co_return;
            if (ec) {
                log(log_level::warning, "accept failed: " + ec.message());
                if (ec == net::error::no_descriptors || ec == net::error::no_buffer_space) {
                    // Out of file descriptors: wait a little before trying again.
                    net::steady_timer pause(acceptor_strand_);
                    pause.expires_after(std::chrono::milliseconds(100));
                    co_await pause.async_wait(net::redirect_error(net::use_awaitable, ec));
                }
                continue;
            }
            socket.set_option(net::ip::tcp::no_delay(true), ec);
            const auto socket_executor = socket.get_executor();
            if (options_.tls) {
                net::co_spawn(socket_executor,
                              session<net::ssl::stream<net::ip::tcp::socket>>(self, std::move(socket), peer),
                              net::detached);
            } else {
                net::co_spawn(socket_executor, session<net::ip::tcp::socket>(self, std::move(socket), peer),
                              net::detached);
            }
        }
    }

    http_reply unavailable() const {
        http_reply reply;
        reply.status = 503;
        reply.body = "too many connections\n";
        reply.headers.push_back({"Retry-After", std::to_string(options_.retry_after.count())});
        return reply;
    }

    std::string choose_subprotocol(const server_request& request) const {
        if (options_.select_subprotocol) return std::string(options_.select_subprotocol(request));
        // The client's order of preference, among the ones supported.
        std::string chosen;
        request.for_each_subprotocol([&](std::string_view offered) {
            for (const std::string& mine : options_.subprotocols) {
                if (mine == offered) {
                    chosen = mine;
                    return false;
                }
            }
            return true;
        });
        return chosen;
    }

    // Counts a new TCP connection (a handshake in progress is a connection)
    // and decides whether it is over the limit; false: drop it unanswered.
    // Moves with the connection's state; counted until destroyed.
    struct admission {
        server_state* state = nullptr;
        bool over_limit = false;
        admission(admission&& other) noexcept
            : state(std::exchange(other.state, nullptr)), over_limit(other.over_limit) {}
        admission& operator=(admission&&) = delete;
        explicit admission(server_state* s) : state(s) {
            const std::size_t before = state->active_.fetch_add(1);
            over_limit = state->options_.max_connections > 0 && before >= state->options_.max_connections;
            if (over_limit) {
                state->active_.fetch_sub(1);
                state->refusing_.fetch_add(1);
            }
        }
        // Refusals are bounded too: past as many again, no answer at all.
        bool answer() const {
            return !over_limit || state->refusing_.load() <= std::max<std::size_t>(state->options_.max_connections, 16);
        }
        ~admission() {
            if (state == nullptr) return;
            if (over_limit) state->refusing_.fetch_sub(1);
            else state->active_.fetch_sub(1);
        }
    };

    // One connection: TLS, the opening handshake, then the handler on a
    // coroutine of its own. This frame ends once the handler started, so an
    // idle connection holds the handler's frames and nothing of the session
    // but what its completion keeps (the admission, the backend).
    // `keep_alive` holds the server state while the session runs.
    template <class Layer>
    net::awaitable<void> session(std::shared_ptr<server_state> keep_alive, net::ip::tcp::socket socket,
                                 net::ip::tcp::endpoint peer) {
        admission admitted(this);
        if (!admitted.answer()) co_return;
        const net::any_io_executor executor = socket.get_executor();
        std::uint64_t id = 0;
        std::shared_ptr<websocket_backend> backend;
        try {
            backend = co_await open_session<Layer>(std::move(socket), peer, admitted.over_limit, id);
        } catch (const std::exception& e) {
            log(log_level::error, std::string("session failed: ") + e.what());
        }
        if (!backend) {
            if (id != 0) remove_session(id);
            co_return;
        }
        if (!handler_) {
            auto state = std::make_shared<callback_session>(
                callback_session{std::move(keep_alive), websocket(backend), {}, std::move(admitted), id});
            call_back(*state, [&] {
                if (callbacks_.on_open) callbacks_.on_open(state->ws);
            });
            backend->release_request(); // on_open's to see (ws.request()); a few KiB
            // The reads go on after a failed callback too: they finish the
            // closing handshake it started.
            callback_read(std::move(state));
            co_return;
        }
        // Reads go on in the background, whatever the handler does.
        backend->start_reading(options_.max_queue);
        net::co_spawn(executor, handler_(websocket(backend)),
                      [self = std::move(keep_alive), backend, admitted = std::move(admitted),
                       id](std::exception_ptr e) mutable {
                          self->handler_ended(std::move(backend), e, id, std::move(admitted));
                      });
    }

    // What a handler or a callback threw: nothing, or a connection_closed
    // (the connection ended under it), is no failure; anything else is,
    // and is logged.
    bool is_failure(const websocket_backend& backend, const std::exception_ptr& e) const {
        if (!e) return false;
        try {
            std::rethrow_exception(e);
        } catch (const connection_closed&) {
            return false;
        } catch (const std::exception& error) {
            log(log_level::error, endpoint_text(backend.remote) + " handler failed: " + error.what());
        } catch (...) {
            log(log_level::error, endpoint_text(backend.remote) + " handler failed");
        }
        return true;
    }

    // After the handler: Python websockets' rule, a handler that returns
    // closes with 1000, one that fails with 1011; a connection that ended
    // under it (connection_closed) needs nothing more.
    // `admitted` counts the connection until it is over.
    void handler_ended(std::shared_ptr<websocket_backend> backend, std::exception_ptr e, std::uint64_t id,
                       admission admitted) {
        const bool failed = is_failure(*backend, e);
        if (!backend->is_open()) {
            log_close(*backend);
            remove_session(id);
            return;
        }
        const net::any_io_executor executor = backend->executor();
        net::co_spawn(executor, end_session(backend, failed),
                      [self = shared_from_this(), id, admitted = std::move(admitted)](std::exception_ptr) mutable {
                          self->remove_session(id);
                          const admission done = std::move(admitted); // uncounted now
                      });
    }

    // TLS (for wss://) and the opening handshake; the open websocket, or
    // null when the request was answered otherwise or the handshake failed.
    template <class Layer>
    net::awaitable<std::shared_ptr<websocket_backend>> open_session(net::ip::tcp::socket socket,
                                                                     net::ip::tcp::endpoint peer, bool over_limit,
                                                                     std::uint64_t& id) {
        std::shared_ptr<stream_backend<Layer>> backend;
        if constexpr (std::is_same_v<Layer, net::ip::tcp::socket>) {
            backend = std::make_shared<stream_backend<Layer>>(std::move(socket));
        } else {
            backend = std::make_shared<stream_backend<Layer>>(std::move(socket), *options_.tls);
            if (!co_await tls_handshake(backend->stream.next_layer())) co_return nullptr;
        }
        backend->remote = peer;
        auto& stream = backend->stream;
        const std::string peer_text = options_.log ? endpoint_text(peer) : std::string();
        backend->id = websocket::next_id();
        stream.set_options(shared_connection_options_);
        stream.set_low_water_mark(options_.low_water_mark);
        stream.set_upgrade_handler([this, over_limit](const server_request& request, accept_options& answer)
                                       -> std::optional<http_reply> {
            if (over_limit) return unavailable();
            if (options_.process_request) {
                if (std::optional<http_reply> reply = options_.process_request(request, answer)) return reply;
            }
            if (answer.subprotocol.empty()) answer.subprotocol = choose_subprotocol(request);
            return std::nullopt;
        });
        stream.set_http_handler([this, over_limit](const server_request& request) -> http_reply {
            if (over_limit) return unavailable();
            if (options_.process_request) {
                accept_options ignored;
                if (std::optional<http_reply> reply = options_.process_request(request, ignored)) return *reply;
            }
            // RFC 9110 §15.5.22: 426 names the protocol to upgrade to.
            http_reply reply;
            reply.status = 426;
            reply.body = "this service requires a WebSocket connection\n";
            reply.headers.push_back({"Upgrade", "websocket"});
            return reply;
        });

        // Registered from here on, so that stop() can end the handshake too.
        add_session(backend->id, backend);
        id = backend->id;
        if (stopping_.load()) co_return nullptr;
        const net_error_code accepted = co_await stream.co_accept();
        // The handlers refer to this server: drop them once used.
        stream.set_upgrade_handler({});
        stream.set_http_handler({});
        if (accepted) {
            const std::error_code why = to_std_error(accepted);
            if (over_limit) log(log_level::warning, peer_text + " refused: too many connections (503)");
            else if (why == error::handshake_rejected) log(log_level::info, peer_text + " answered with HTTP");
            else log(log_level::info, peer_text + " handshake failed: " + why.message());
            co_return nullptr;
        }
        wsx::connection* core = stream.connection();
        backend->target = std::string(core->request().http.target);
        backend->subprotocol = std::string(core->subprotocol());
        log(log_level::info, peer_text + " open " + backend->target + (core->deflate_enabled() ? " (permessage-deflate)" : ""));
        if (!mark_open(backend->id)) backend->start_close(close_code::going_away, "server shutting down");
        co_return backend;
    }

    // ---- callbacks (message_handler) ------------------------------------------

    // A connection served by callbacks: a chain of reads that holds it.
    struct callback_session {
        std::shared_ptr<server_state> server;
        websocket ws;
        message inbox;
        admission admitted;
        std::uint64_t id = 0;
        bool failed = false; // a callback threw: no more messages
    };

    // Runs a callback; false when it threw (the connection is then closing with 1011).
    template <class Call>
    bool call_back(callback_session& s, Call call) {
        try {
            call();
            return true;
        } catch (...) {
            if (!is_failure(*s.ws.backend(), std::current_exception())) return true;
        }
        s.failed = true;
        s.ws.backend()->start_close(close_code::internal_error, "internal error");
        return false;
    }

    // Hands out the messages already there, a bounded number at once, then
    // waits for more; ends with on_close.
    void callback_read(std::shared_ptr<callback_session> s) {
        websocket_backend& backend = *s->ws.backend();
        for (int turn = 0;; ++turn) {
            if (turn == 16) {
                // More may be buffered: go on after the other connections'
                // turns, not with a wait for bytes that may never come.
                const net::any_io_executor executor = backend.executor();
                net::post(executor, [s = std::move(s)]() mutable {
                    server_state& server = *s->server;
                    server.callback_read(std::move(s));
                });
                return;
            }
            net_error_code result;
            if (!backend.read_now(s->inbox, result)) break;
            if (result) return callback_ended(std::move(s), result);
            deliver(*s);
        }
        // Nothing buffered: wait for the peer.
        message& inbox = s->inbox;
        // (Only `s` is captured: the callback fits inside std::function.)
        backend.read_then(inbox, [s](net_error_code result) mutable {
            server_state& server = *s->server;
            if (result) return server.callback_ended(std::move(s), result);
            server.deliver(*s);
            server.callback_read(std::move(s));
        });
    }

    void deliver(callback_session& s) {
        if (s.failed) return;
        call_back(s, [&] {
            if (callbacks_.on_message) callbacks_.on_message(s.ws, s.inbox);
        });
    }

    // The read ended: the connection is over (or failed under a callback).
    void callback_ended(std::shared_ptr<callback_session> s, const net_error_code&) {
        websocket_backend& backend = *s->ws.backend();
        if (backend.is_open()) {
            // A read that could not run (a callback called receive()): close.
            backend.start_close(close_code::internal_error, "internal error");
        }
        const close_status status = backend.reported_status(); // as receive() reports it
        call_back(*s, [&] {
            if (callbacks_.on_close) callbacks_.on_close(s->ws, status);
        });
        log_close(backend);
        remove_session(s->id);
    }

    // Closes the connection its handler left open.
    net::awaitable<void> end_session(std::shared_ptr<websocket_backend> backend, bool failed) {
        if (failed) co_await backend->close(close_code::internal_error, "internal error");
        else co_await backend->close(close_code::normal, {});
        log_close(*backend);
    }

    void log_close(const websocket_backend& backend) const {
        if (!options_.log) return;
        const close_status& status = backend.status();
        std::string why = std::to_string(static_cast<unsigned>(status.code));
        if (!status.reason.empty()) why += " " + status.reason;
        if (status.ec && status.ec != error::connection_closed) why += " (" + status.ec.message() + ")";
        log(is_normal_close(status) ? log_level::info : log_level::warning,
            endpoint_text(backend.remote) + " close " + why);
    }

    // The TLS handshake, bounded by the open timeout.
    net::awaitable<bool> tls_handshake(net::ssl::stream<net::ip::tcp::socket>& layer) {
        const duration limit = options_.connection.open_timeout.count() > 0 ? options_.connection.open_timeout
                                                                            : duration(std::chrono::hours(24));
        deadline_guard guard(layer.get_executor(), limit, [&layer] { close_lowest_layer(layer); });
        net_error_code ec;
        co_await layer.async_handshake(net::ssl::stream_base::server, net::redirect_error(net::use_awaitable, ec));
        guard.disarm();
        if (ec) log(log_level::info, endpoint_text(layer.lowest_layer().remote_endpoint(ec)) + " TLS handshake failed");
        co_return !ec;
    }

    net::any_io_executor executor_;
    net::strand<net::any_io_executor> acceptor_strand_;
    std::vector<net::ip::tcp::acceptor> acceptors_; // one per address of the host
    net::steady_timer done_timer_;
    net::ip::tcp::endpoint local_;
    connection_handler handler_; // empty: callbacks_ serve the connections
    message_handler callbacks_;
    server_options options_;
    std::shared_ptr<const connection_options> shared_connection_options_; // every connection's
    bool use_strands_;
    std::atomic<bool> stopping_{false};
    std::atomic<std::size_t> active_{0};
    std::atomic<std::size_t> refusing_{0};
    std::mutex mutex_;
    std::unordered_map<std::uint64_t, session_entry> sessions_;
    std::mutex stop_mutex_;
    std::condition_variable stop_cv_;
    bool stopped_ = false;
};

} // namespace detail

WSX_DECL net::ip::tcp::endpoint server::local_endpoint() const { return state_->local_endpoint(); }
WSX_DECL std::size_t server::connections() const noexcept { return state_ ? state_->connections() : 0; }
WSX_DECL bool server::stopping() const noexcept { return state_ && state_->stopping(); }

WSX_DECL void server::stop() {
    if (!state_) return;
    if (!io_) {
        net::co_spawn(executor_, state_->stop(state_), net::detached);
        state_.reset();
        return;
    }
    if (threads_.empty()) return; // stopped and joined already
    net::co_spawn(*io_, state_->stop(state_), net::detached);
    if (running_on_own_thread()) return;
    state_->wait_stopped();
    join();
}

WSX_DECL net::awaitable<void> server::stopping_operation() { return state_->stop(state_); }

WSX_DECL void server::wait() {
    if (!state_ || !io_ || threads_.empty()) return;
    state_->wait_stopped();
    join();
}

WSX_DECL bool server::running_on_own_thread() const {
    for (const std::thread& t : threads_)
        if (t.get_id() == std::this_thread::get_id()) return true;
    return false;
}

WSX_DECL void server::join() {
    work_ = net::any_io_executor();
    for (std::thread& t : threads_) t.join();
    threads_.clear();
}

namespace detail {

WSX_DECL server server_access::on_executor(net::any_io_executor executor, connection_handler handler,
                                           message_handler callbacks, const std::string& host, std::uint16_t port,
                                           server_options options) {
    server s;
    s.executor_ = executor;
    const bool use_strands = options.threads != 1;
    s.state_ = std::make_shared<server_state>(executor, std::move(handler), std::move(callbacks), std::move(options),
                                              use_strands);
    s.state_->listen(host, port);
    return s;
}

WSX_DECL server server_access::on_own_threads(connection_handler handler, message_handler callbacks,
                                              const std::string& host, std::uint16_t port, server_options options) {
    server s;
    const unsigned threads = std::max(1u, options.threads);
    s.io_ = std::make_unique<net::io_context>(static_cast<int>(threads));
    s.executor_ = s.io_->get_executor();
    s.work_ = net::prefer(s.io_->get_executor(), net::execution::outstanding_work.tracked);
    s.state_ = std::make_shared<server_state>(s.executor_, std::move(handler), std::move(callbacks),
                                              std::move(options), threads > 1);
    s.state_->listen(host, port);
    for (unsigned i = 0; i < threads; ++i) s.threads_.emplace_back([io = s.io_.get()] { io->run(); });
    return s;
}

} // namespace detail
} // namespace wsx
