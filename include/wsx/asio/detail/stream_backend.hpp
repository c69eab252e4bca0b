// wsx/asio/detail/stream_backend.hpp - the websocket backend over
// wsx::async_stream<Layer>: what serve() and connect() make for each
// connection (plain TCP or TLS). Included by their implementations only.
#pragma once

#include <wsx/asio/async_stream.hpp>
#include <wsx/asio/config.hpp>
#include <wsx/asio/websocket.hpp>

#include <memory>
#include <string>
#include <typeinfo>
#include <utility>

namespace wsx::detail {

// any_executor::target<T>() does not check the type (Asio 1.22): ask first.
template <class Target, class Executor>
const Target* executor_target(const Executor& executor) noexcept {
    return executor.target_type() == typeid(Target) ? executor.template target<Target>() : nullptr;
}

template <class Executor>
bool runs_here(const Executor& executor) noexcept {
    if (auto* strand = executor_target<net::strand<net::io_context::executor_type>>(executor))
        return strand->running_in_this_thread();
    if (auto* strand = executor_target<net::strand<net::any_io_executor>>(executor))
        return strand->running_in_this_thread();
    if (auto* plain = executor_target<net::io_context::executor_type>(executor)) return plain->running_in_this_thread();
    return false;
}

// The backend over wsx::async_stream<Layer>.
template <class Layer>
class stream_backend final : public websocket_backend, public std::enable_shared_from_this<stream_backend<Layer>> {
public:
    template <class... Args>
    explicit stream_backend(Args&&... args) : stream(std::forward<Args>(args)...) {}
    ~stream_backend() override = default;

    async_stream<Layer> stream;

    net::any_io_executor executor() override { return stream.get_executor(); }
    bool running_in_this_thread() const noexcept override {
        return runs_here(const_cast<async_stream<Layer>&>(stream).get_executor());
    }
    wsx::connection* core() noexcept override { return stream.connection(); }
    const close_status& status() const noexcept override { return stream.get_close_status(); }
    bool is_open() const noexcept override { return stream.is_open(); }
    std::size_t queued_bytes() const noexcept override { return stream.queued_bytes(); }
    std::size_t high_water_mark() const noexcept override { return stream.options().max_pending_output; }

    bool read_now(message& out, net_error_code& result) override { return stream.try_read(out, result); }
    net::awaitable<net_error_code> read(message& out) override { return stream.read_after_try(out); }
    void read_then(message& out, std::function<void(net_error_code)> done) override {
        stream.read_after_try(out, std::move(done));
    }
    net::awaitable<net_error_code> write(bool text, const_bytes data) override { return stream.co_write(text, data); }
    std::error_code try_write(bool text, const_bytes data) override {
        return text ? stream.try_write_text(as_string_view(data)) : stream.try_write_binary(data);
    }
    std::error_code try_write_shared(const std::shared_ptr<prepared_message>& m, std::size_t high_water_mark) override {
        return stream.try_write_shared(m, high_water_mark);
    }
    net::awaitable<net_error_code> ping(const_bytes payload) override { return stream.co_ping(payload); }
    net::awaitable<net_error_code> close(close_code code, std::string reason) override {
        return stream.co_close(code, std::move(reason));
    }
    void start_close(close_code code, std::string reason) override {
        if (!stream.is_open()) return;
        stream.async_close(code, reason, [keep = this->shared_from_this()](const net_error_code&) {});
    }
    void abort() override { stream.abort(); }

private:
    std::shared_ptr<websocket_backend> self() override { return this->shared_from_this(); }
};

} // namespace wsx::detail
