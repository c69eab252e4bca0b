// wsx/bytes.hpp - non-owning byte views, a C++17 stand-in for std::span.
//
// wsx works on octets as std::uint8_t (arithmetic on them is natural, unlike
// std::byte). Views convert from anything with data()/size() over a one-byte
// element type (std::string, std::string_view, std::vector<char>,
// std::array), so callers rarely spell a view out. C arrays are left out on
// purpose: a string literal would bring its terminating NUL along.
#pragma once

#include <cassert>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <type_traits>

namespace wsx {

template <class T>
class basic_bytes {
    static_assert(sizeof(T) == 1, "a byte view holds one-byte elements");

public:
    using element_type = T;
    using pointer = T*;
    using iterator = T*;

    constexpr basic_bytes() noexcept = default;
    constexpr basic_bytes(T* data, std::size_t size) noexcept : data_(data), size_(size) {}

    // Views of bytes from any contiguous one-byte range (std::string,
    // std::vector<char>, std::array<std::uint8_t, N>, another view...).
    template <class Range,
              class Element = std::remove_pointer_t<decltype(std::declval<Range&>().data())>,
              class = std::enable_if_t<sizeof(Element) == 1 &&
                                       (std::is_const_v<T> || !std::is_const_v<Element>) &&
                                       !std::is_same_v<std::decay_t<Range>, basic_bytes>>>
    constexpr basic_bytes(Range&& range) noexcept // NOLINT: implicit on purpose
        : data_(reinterpret_cast<T*>(range.data())), size_(range.size()) {}

    // A mutable view converts to a const one.
    template <class U, class = std::enable_if_t<std::is_const_v<T> && std::is_same_v<const U, T>>>
    constexpr basic_bytes(basic_bytes<U> other) noexcept : data_(other.data()), size_(other.size()) {}

    constexpr T* data() const noexcept { return data_; }
    constexpr std::size_t size() const noexcept { return size_; }
    constexpr bool empty() const noexcept { return size_ == 0; }
    constexpr T* begin() const noexcept { return data_; }
    constexpr T* end() const noexcept { return data_ + size_; }
    constexpr T& operator[](std::size_t i) const noexcept {
        assert(i < size_);
        return data_[i];
    }

    constexpr basic_bytes first(std::size_t n) const noexcept {
        assert(n <= size_);
        return {data_, n};
    }
    constexpr basic_bytes subspan(std::size_t offset) const noexcept {
        assert(offset <= size_);
        return {data_ + offset, size_ - offset};
    }
    constexpr basic_bytes subspan(std::size_t offset, std::size_t count) const noexcept {
        assert(offset <= size_ && count <= size_ - offset);
        return {data_ + offset, count};
    }

private:
    T* data_ = nullptr;
    std::size_t size_ = 0;
};

using const_bytes = basic_bytes<const std::uint8_t>;
using mutable_bytes = basic_bytes<std::uint8_t>;

// The same bytes seen as characters (text messages, HTTP heads).
inline std::string_view as_string_view(const_bytes b) noexcept {
    return {reinterpret_cast<const char*>(b.data()), b.size()};
}

} // namespace wsx
