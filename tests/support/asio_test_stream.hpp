// An in-memory Asio byte stream for testing the Asio adapter on every error
// path, as test_stream.hpp does for the blocking one: two connected ends in
// one io_context, and a shared counter that makes the Nth operation (a read
// or a write, on either end) fail with an error. Run a scenario for N = 1,
// 2, ... until the counter is never reached: every operation of the
// scenario has then failed once, in turn.
//
//   auto [client, server] = wsx_test::memory_stream::pair(io.get_executor(), failures);
//
// It models AsyncReadStream and AsyncWriteStream, and close(ec), which the
// adapter uses to end it (the peer then reads end of stream). Completion
// handlers are posted to their associated executor, never called inline.
#pragma once

#include <wsx/asio/config.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

namespace wsx_test {

namespace net = wsx::net;

// Counts the operations of both ends; the one numbered fail_at fails.
struct failure_counter {
    std::size_t fail_at = 0; // 0: none fails
    std::size_t operations = 0;
    bool failed = false;
    bool next_fails() {
        ++operations;
        if (fail_at == 0 || operations != fail_at) return false;
        failed = true;
        return true;
    }
};

class memory_stream {
public:
    using executor_type = net::any_io_executor;

    static std::pair<memory_stream, memory_stream> pair(executor_type executor,
                                                        std::shared_ptr<failure_counter> counter) {
        auto a = std::make_shared<pipe>();
        auto b = std::make_shared<pipe>();
        return {memory_stream(executor, b, a, counter), memory_stream(executor, a, b, counter)};
    }

    executor_type get_executor() const { return executor_; }

    template <class Buffers, class Token>
    auto async_read_some(const Buffers& buffers, Token&& token) {
        return net::async_initiate<Token, void(wsx::net_error_code, std::size_t)>(
            [this, buffers](auto handler) {
                auto done = wrap(std::move(handler));
                if (counter_->next_fails()) return done(net::error::connection_reset, 0);
                if (closed_) return done(net::error::bad_descriptor, 0);
                // (The pipe calls its reader itself: a plain pointer, no cycle.)
                in_->reader = [in = in_.get(), buffers, done](wsx::net_error_code ec) {
                    if (ec) return done(ec, 0);
                    const std::size_t n = net::buffer_copy(buffers, net::buffer(in->bytes));
                    in->bytes.erase(in->bytes.begin(), in->bytes.begin() + static_cast<std::ptrdiff_t>(n));
                    done({}, n);
                };
                in_->serve();
            },
            token);
    }

    template <class Buffers, class Token>
    auto async_write_some(const Buffers& buffers, Token&& token) {
        return net::async_initiate<Token, void(wsx::net_error_code, std::size_t)>(
            [this, buffers](auto handler) {
                auto done = wrap(std::move(handler));
                if (counter_->next_fails()) return done(net::error::broken_pipe, 0);
                if (closed_ || out_->closed) return done(net::error::broken_pipe, 0);
                const std::size_t n = net::buffer_size(buffers);
                const std::size_t at = out_->bytes.size();
                out_->bytes.resize(at + n);
                net::buffer_copy(net::buffer(out_->bytes.data() + at, n), buffers);
                out_->serve();
                done({}, n);
            },
            token);
    }

    // Ends this end: its pending read fails, the peer reads end of stream.
    void close(wsx::net_error_code& ec) {
        ec = {};
        if (closed_) return;
        closed_ = true;
        out_->closed = true;
        out_->serve();
        in_->aborted = true;
        in_->serve();
    }

private:
    // Bytes travelling one way, and the read waiting for them.
    struct pipe {
        std::vector<std::uint8_t> bytes;
        std::function<void(wsx::net_error_code)> reader;
        bool closed = false;  // the writer ended: end of stream once drained
        bool aborted = false; // the reader's own end was closed
        void serve() {
            if (!reader) return;
            if (aborted) return std::exchange(reader, {})(net::error::operation_aborted);
            if (!bytes.empty()) return std::exchange(reader, {})({});
            if (closed) return std::exchange(reader, {})(net::error::eof);
        }
    };

    memory_stream(executor_type executor, std::shared_ptr<pipe> in, std::shared_ptr<pipe> out,
                  std::shared_ptr<failure_counter> counter)
        : executor_(std::move(executor)), in_(std::move(in)), out_(std::move(out)), counter_(std::move(counter)) {}

    // A copyable callable that posts the handler (move-only) with its result.
    template <class Handler>
    auto wrap(Handler handler) {
        auto held = std::make_shared<Handler>(std::move(handler));
        executor_type fallback = executor_;
        return [held, fallback](wsx::net_error_code ec, std::size_t n) {
            const auto executor = net::get_associated_executor(*held, fallback);
            net::post(executor, [held, ec, n]() { std::move (*held)(ec, n); });
        };
    }

    executor_type executor_;
    std::shared_ptr<pipe> in_;
    std::shared_ptr<pipe> out_;
    std::shared_ptr<failure_counter> counter_;
    bool closed_ = false;
};

} // namespace wsx_test
