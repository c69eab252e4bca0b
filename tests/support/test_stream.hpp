// tests/support/test_stream.hpp - an in-memory byte stream for tests of
// wsx::stream and other NextLayer users.
//
// make_test_stream_pair() gives two connected ends: what one writes, the
// other reads. Each end can be told to
//   - hand out at most `max_read` bytes per read_some (1: one byte per call),
//   - take at most `max_write` bytes per write_some,
//   - fail its Nth I/O call (counting reads and writes from 0) with a chosen
//     error, and every call after it, as a broken socket would.
// Reads block until bytes arrive, the peer closes, or `wait_limit` passes
// (then std::errc::timed_out), so a test whose peer never answers ends
// instead of hanging. Both ends may be used from different threads.
// The number of I/O calls an end made is deterministic when reads are one
// byte at a time, which is what lets a test fail every call in turn.
#pragma once

#include <wsx/bytes.hpp>
#include <wsx/error.hpp>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <limits>
#include <memory>
#include <mutex>
#include <system_error>
#include <utility>

namespace wsx::test {

// One direction: bytes written at one end, read at the other.
class byte_pipe {
public:
    void write(const_bytes data) {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            bytes_.insert(bytes_.end(), data.begin(), data.end());
        }
        changed_.notify_all();
    }

    // Waits for bytes or the writer's close; false when the wait ran out.
    bool wait(std::chrono::milliseconds limit) {
        std::unique_lock<std::mutex> lock(mutex_);
        return changed_.wait_for(lock, limit, [this] { return !bytes_.empty() || writer_closed_; });
    }

    // Takes up to out.size() bytes; 0 with `ended` set once the writer has
    // closed and everything was read.
    std::size_t read(mutable_bytes out, bool& ended) {
        std::lock_guard<std::mutex> lock(mutex_);
        const std::size_t n = std::min(out.size(), bytes_.size());
        std::copy_n(bytes_.begin(), n, out.begin());
        bytes_.erase(bytes_.begin(), bytes_.begin() + static_cast<std::ptrdiff_t>(n));
        ended = n == 0 && writer_closed_;
        return n;
    }

    void close_writer() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            writer_closed_ = true;
        }
        changed_.notify_all();
    }
    void close_reader() {
        std::lock_guard<std::mutex> lock(mutex_);
        reader_closed_ = true;
        bytes_.clear();
    }
    bool reader_closed() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return reader_closed_;
    }

private:
    mutable std::mutex mutex_;
    std::condition_variable changed_;
    std::deque<std::uint8_t> bytes_;
    bool writer_closed_ = false;
    bool reader_closed_ = false;
};

// One end of an in-memory connection (a NextLayer without gather writes).
class test_stream {
public:
    static constexpr std::size_t never = std::numeric_limits<std::size_t>::max();

    test_stream(std::shared_ptr<byte_pipe> in, std::shared_ptr<byte_pipe> out)
        : in_(std::move(in)), out_(std::move(out)) {}
    test_stream(test_stream&&) noexcept = default;
    test_stream& operator=(test_stream&&) = delete;
    test_stream(const test_stream&) = delete;
    test_stream& operator=(const test_stream&) = delete;
    ~test_stream() { close(); }

    // Settings; change them before use.
    std::size_t max_read = never;
    std::size_t max_write = never;
    std::size_t fail_at = never; // index of the first I/O call that fails
    std::error_code fail_error = std::make_error_code(std::errc::connection_reset);
    std::chrono::milliseconds wait_limit{10000};

    std::size_t calls() const noexcept { return calls_; }
    bool torn_down() const noexcept { return torn_down_; }

    std::size_t read_some(mutable_bytes buffer, std::error_code& ec) {
        if (fails_now(ec) || buffer.empty()) return 0;
        if (!in_) {
            ec = std::make_error_code(std::errc::not_connected);
            return 0;
        }
        if (!in_->wait(wait_limit)) {
            ec = std::make_error_code(std::errc::timed_out);
            return 0;
        }
        bool ended = false;
        const std::size_t n = in_->read(buffer.first(std::min(buffer.size(), max_read)), ended);
        if (ended) ec = make_error_code(error::end_of_stream);
        return n;
    }

    std::size_t write_some(const_bytes buffer, std::error_code& ec) {
        if (fails_now(ec) || buffer.empty()) return 0;
        if (!out_ || out_->reader_closed()) {
            ec = std::make_error_code(std::errc::broken_pipe);
            return 0;
        }
        const std::size_t n = std::min(buffer.size(), max_write);
        out_->write(buffer.first(n));
        return n;
    }

    // Ends the direction towards the peer only: it reads end of stream.
    void shutdown_write() noexcept {
        if (out_) out_->close_writer();
    }

    // Ends both directions: the peer reads end of stream, its writes fail.
    void close() noexcept {
        if (out_) out_->close_writer();
        if (in_) in_->close_reader();
        in_.reset();
        out_.reset();
    }

    friend void teardown(test_stream& stream, std::error_code& ec) {
        ec.clear();
        stream.torn_down_ = true;
        stream.close();
    }

protected:
    bool fails_now(std::error_code& ec) {
        ec.clear();
        const std::size_t index = calls_++;
        if (index >= fail_at) {
            ec = fail_error;
            return true;
        }
        return false;
    }

    std::shared_ptr<byte_pipe> in_;
    std::shared_ptr<byte_pipe> out_;
    std::size_t calls_ = 0;
    bool torn_down_ = false;
};

// The same, with a gather write_some (as writev), counting as one call.
class gather_test_stream : public test_stream {
public:
    using test_stream::test_stream;
    using test_stream::write_some;

    std::size_t write_some(const const_bytes* buffers, std::size_t count, std::error_code& ec) {
        if (fails_now(ec)) return 0;
        if (!out_ || out_->reader_closed()) {
            ec = std::make_error_code(std::errc::broken_pipe);
            return 0;
        }
        std::size_t budget = max_write;
        std::size_t written = 0;
        ++gather_calls_;
        for (std::size_t i = 0; i < count && budget > 0; ++i) {
            const std::size_t n = std::min(buffers[i].size(), budget);
            out_->write(buffers[i].first(n));
            written += n;
            budget -= n;
        }
        return written;
    }

    std::size_t gather_calls() const noexcept { return gather_calls_; }

private:
    std::size_t gather_calls_ = 0;
};

template <class End = test_stream>
std::pair<End, End> make_test_stream_pair() {
    auto a_to_b = std::make_shared<byte_pipe>();
    auto b_to_a = std::make_shared<byte_pipe>();
    return {End(b_to_a, a_to_b), End(a_to_b, b_to_a)};
}

} // namespace wsx::test
