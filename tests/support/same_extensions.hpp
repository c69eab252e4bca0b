// tests/support/same_extensions.hpp - whether two parsed
// Sec-WebSocket-Extensions lists are equal, for the extension tests and the
// extension fuzzer (no test framework needed).
#pragma once

#include <wsx/extension.hpp>

#include <cstddef>
#include <vector>

namespace wsx::test {

// The same extensions in the same order, each with the same parameters
// (names and values) in the same order.
inline bool same_extensions(const std::vector<extension>& a, const std::vector<extension>& b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (a[i].name != b[i].name || a[i].params.size() != b[i].params.size()) return false;
        for (std::size_t j = 0; j < a[i].params.size(); ++j) {
            if (a[i].params[j].name != b[i].params[j].name || a[i].params[j].value != b[i].params[j].value)
                return false;
        }
    }
    return true;
}

} // namespace wsx::test
