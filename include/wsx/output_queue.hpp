// wsx/output_queue.hpp - the bytes a connection has queued for writing, as
// a sequence of segments of three kinds:
//
//   owned     bytes the queue holds (frame headers, control frames, copied
//             or compressed payloads), written in place into blocks;
//   borrowed  the caller's own memory (a large payload sent without a
//             copy): the caller keeps it valid until written() has passed
//             the position queued() had right after it was appended;
//   shared    immutable bytes held by a shared owner (a broadcast frame,
//             made and compressed once, referenced by every receiver).
//
// gather() fills a gather list (writev, an Asio buffer sequence) and
// consume() takes written bytes off the front. The bytes gather() and
// front() hand out stay where they are until consumed, whatever is appended
// meanwhile: a writer may keep writing them while the connection queues
// more (pongs, other writers' frames). To keep that promise a block is only
// moved (grown) while none of its bytes has been handed out.
#pragma once

#include <wsx/bytes.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

namespace wsx {

class output_queue {
public:
    struct segment {
        std::shared_ptr<const void> owner; // shared: keeps the bytes alive
        const std::uint8_t* data = nullptr; // borrowed, shared
        std::size_t offset = 0;             // owned: where in its block
        std::size_t size = 0;
        std::uint32_t block = 0;            // owned: the block's number
        bool owned = false;
    };
    // Owned bytes live in blocks, filled in order and freed (the last one
    // reused) once every segment in them was consumed. bytes.size() is the
    // block's room: growing it zero-fills once, not per frame.
    struct block {
        std::vector<std::uint8_t> bytes;
        std::size_t used = 0;
        std::size_t live = 0; // owned segments still waiting in it
        std::uint32_t number = 0;
    };
    // The memory of an empty queue, for a pool to keep between uses: an
    // idle queue holds none.
    struct storage {
        std::vector<std::uint8_t> bytes;
        std::vector<segment> segments;
        std::vector<block> blocks; // capacity only
    };

    // Bytes waiting, and the positions in the stream of all bytes ever
    // queued: queued() is the end of what was appended, written() of what
    // was consumed.
    std::size_t size() const noexcept { return size_; }
    bool empty() const noexcept { return size_ == 0; }
    std::uint64_t queued() const noexcept { return written_ + size_; }
    std::uint64_t written() const noexcept { return written_; }

    // Room for n owned bytes at the end; the caller fills them at once.
    std::uint8_t* append(std::size_t n) {
        block& b = room_for(n);
        const std::size_t at = b.used;
        b.used += n;
        size_ += n;
        // Right after the last owned segment: that segment grows.
        if (head_ < segments_.size()) {
            segment& last = segments_.back();
            if (last.owned && last.block == b.number && last.offset + last.size == at) {
                last.size += n;
                return b.bytes.data() + at;
            }
        }
        ++b.live;
        segment s;
        s.owned = true;
        s.block = b.number;
        s.offset = at;
        s.size = n;
        segments_.push_back(std::move(s));
        return b.bytes.data() + at;
    }

    void append_borrowed(const_bytes bytes) { append_external({}, bytes); }
    void append_shared(std::shared_ptr<const void> owner, const_bytes bytes) {
        append_external(std::move(owner), bytes);
    }

    // The first contiguous piece of what waits.
    const_bytes front() const noexcept {
        if (head_ == segments_.size()) return {};
        exposed_ = true;
        return view(segments_[head_]);
    }
    // Up to `max` pieces, in order; returns how many.
    std::size_t gather(const_bytes* out, std::size_t max) const noexcept {
        std::size_t n = 0;
        for (std::size_t i = head_; i < segments_.size() && n < max; ++i) out[n++] = view(segments_[i]);
        if (n > 0) exposed_ = true;
        return n;
    }

    // Takes n written bytes off the front.
    void consume(std::size_t n) noexcept {
        n = std::min(n, size_);
        size_ -= n;
        written_ += n;
        while (n > 0) {
            segment& s = segments_[head_];
            if (n < s.size) {
                s.size -= n;
                if (s.owned) s.offset += n;
                else s.data += n;
                return;
            }
            n -= s.size;
            pop_front();
        }
        if (size_ == 0) reset();
    }

    // Drops everything waiting (the transport failed): borrowed and shared
    // bytes are let go, the blocks kept (a write may still hold their
    // addresses) until the queue is released or destroyed.
    void clear() noexcept {
        written_ += size_;
        size_ = 0;
        for (std::size_t i = head_; i < segments_.size(); ++i) segments_[i].owner.reset();
        segments_.clear();
        head_ = 0;
        for (block& b : blocks_) b.live = 0;
    }

    // An empty queue gives its memory away (and holds none until it needs
    // some), or takes what it lacks from `from`.
    bool release(storage& into) noexcept {
        if (size_ != 0) return false;
        into.segments = std::move(segments_);
        into.segments.clear();
        segments_ = {};
        head_ = 0;
        into.bytes.clear();
        if (!blocks_.empty()) {
            // The largest block is the one worth keeping.
            auto largest = std::max_element(blocks_.begin(), blocks_.end(), [](const block& a, const block& b) {
                return a.bytes.size() < b.bytes.size();
            });
            into.bytes = std::move(largest->bytes);
        }
        blocks_.clear();
        into.blocks = std::move(blocks_);
        into.blocks.clear();
        blocks_ = {};
        exposed_ = false;
        return true;
    }
    void adopt(storage& from) noexcept {
        if (segments_.capacity() == 0 && size_ == 0) std::swap(segments_, from.segments);
        if (blocks_.capacity() == 0 && blocks_.empty()) std::swap(blocks_, from.blocks);
        if (blocks_.empty() && !from.bytes.empty()) {
            blocks_.push_back(block{std::move(from.bytes), 0, 0, next_number_++});
            from.bytes = {};
        }
    }

    // Memory held (for tests and measurements).
    std::size_t capacity() const noexcept {
        std::size_t total = segments_.capacity() * sizeof(segment) + blocks_.capacity() * sizeof(block);
        for (const block& b : blocks_) total += b.bytes.capacity();
        return total;
    }

private:
    static constexpr std::size_t min_block = 256;
    static constexpr std::size_t max_spare = 1024 * 1024; // room made beyond what is asked

    block& room_for(std::size_t n) {
        if (!blocks_.empty()) {
            block& last = blocks_.back();
            if (last.bytes.size() - last.used >= n) return last;
            if (!exposed_ || last.live == 0) {
                // None of its bytes is in a writer's hands: it may move.
                if (last.live == 0) last.used = 0;
                const std::size_t need = last.used + n;
                if (last.bytes.size() < need)
                    last.bytes.resize(std::max(need, std::min(2 * last.bytes.size(), need + max_spare)));
                return last;
            }
        }
        const std::size_t previous = blocks_.empty() ? 0 : blocks_.back().bytes.size();
        const std::size_t room = std::max({n, min_block, std::min(previous, max_spare)});
        blocks_.push_back(block{std::vector<std::uint8_t>(room), 0, 0, next_number_++});
        return blocks_.back();
    }

    void append_external(std::shared_ptr<const void> owner, const_bytes bytes) {
        if (bytes.empty()) return;
        segment s;
        s.owner = std::move(owner);
        s.data = bytes.data();
        s.size = bytes.size();
        segments_.push_back(std::move(s));
        size_ += bytes.size();
    }

    const_bytes view(const segment& s) const noexcept {
        if (!s.owned) return {s.data, s.size};
        return {block_of(s.block).bytes.data() + s.offset, s.size};
    }
    const block& block_of(std::uint32_t number) const noexcept {
        // Blocks are numbered in order and only the front ones leave.
        return blocks_[number - blocks_.front().number];
    }
    block& block_of(std::uint32_t number) noexcept {
        return blocks_[number - blocks_.front().number];
    }

    void pop_front() noexcept {
        segment& s = segments_[head_];
        if (s.owned) {
            block& b = block_of(s.block);
            if (--b.live == 0 && &b != &blocks_.back()) {
                // Blocks empty in order: this one is the front.
                blocks_.erase(blocks_.begin());
            }
        }
        s.owner.reset();
        ++head_;
        // Keep the list short while it never quite empties.
        if (head_ >= 64 && head_ * 2 >= segments_.size()) {
            segments_.erase(segments_.begin(), segments_.begin() + static_cast<std::ptrdiff_t>(head_));
            head_ = 0;
        }
    }

    // Everything was written: the last block is reused from its start.
    void reset() noexcept {
        segments_.clear();
        head_ = 0;
        exposed_ = false;
        if (blocks_.size() > 1) blocks_.erase(blocks_.begin(), blocks_.end() - 1);
        if (!blocks_.empty()) {
            blocks_.back().used = 0;
            blocks_.back().live = 0;
        }
    }

    std::vector<segment> segments_; // [head_, end) waits
    std::size_t head_ = 0;
    std::vector<block> blocks_;
    std::size_t size_ = 0;
    std::uint64_t written_ = 0;
    std::uint32_t next_number_ = 0;
    mutable bool exposed_ = false; // bytes were handed out since the queue was last empty
};

} // namespace wsx
