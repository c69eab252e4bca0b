// Cross-checks wsx::utf8_validator against the slow reference validator:
// the whole input, the input split in two at a point taken from its first
// byte, the input in uneven pieces, and the fail-fast position.
#include <wsx/utf8.hpp>

#include "../support/utf8_reference.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>

namespace {

void expect(bool condition) {
    if (!condition) std::abort();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const wsx::const_bytes input(data, size);
    const bool valid = wsx_test::reference_is_valid(data, size);
    expect(wsx::is_valid_utf8(input) == valid);

    // Byte by byte: the first byte rejected is the first after which no
    // continuation can make the text valid.
    wsx::utf8_validator one_by_one;
    std::size_t fails_at = size;
    for (std::size_t i = 0; i < size; ++i) {
        const bool ok = one_by_one.feed(input.subspan(i, 1));
        if (!ok && fails_at == size) fails_at = i;
        expect(ok == (fails_at == size));
    }
    expect(one_by_one.complete() == valid);
    if (fails_at < size) {
        expect(wsx_test::reference_is_completable(data, fails_at));
        expect(!wsx_test::reference_is_completable(data, fails_at + 1));
    } else {
        expect(wsx_test::reference_is_completable(data, size));
    }

    // Whole, and in two pieces split where the first byte says.
    wsx::utf8_validator whole;
    expect(whole.feed(input) == (fails_at == size));
    expect(whole.complete() == valid);
    const std::size_t split = size == 0 ? 0 : data[0] % (size + 1);
    wsx::utf8_validator halves;
    const bool first_ok = halves.feed(input.first(split));
    expect(first_ok == (fails_at >= split));
    const bool second_ok = halves.feed(input.subspan(split));
    expect(second_ok == (fails_at == size));
    expect(halves.complete() == valid);

    // Uneven pieces whose sizes come from the input itself.
    wsx::utf8_validator pieces;
    bool all_ok = true;
    for (std::size_t i = 0, k = 0; i < size; ++k) {
        const std::size_t n = std::min<std::size_t>(size - i, 1 + data[k % size] % 70);
        all_ok = pieces.feed(input.subspan(i, n)) && all_ok;
        i += n;
    }
    expect(all_ok == (fails_at == size));
    expect(pieces.complete() == valid);
    expect(pieces.failed() == (fails_at < size));
    return 0;
}
