// Sec-WebSocket-Extensions grammar: any input either fails to parse or
// parses, formats and parses again to the same extensions and text.
#include <wsx/extension.hpp>

#include "../support/same_extensions.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    std::vector<wsx::extension> first;
    if (wsx::parse_extensions(input, first)) {
        if (!first.empty()) std::abort(); // a failed parse leaves out untouched
        return 0;
    }
    for (const auto& ext : first) {
        if (ext.name.empty()) std::abort();
        for (const auto& param : ext.params) {
            if (param.name.empty() || (param.value && param.value->empty())) std::abort();
        }
    }
    const std::string formatted = wsx::format_extensions(first);
    std::vector<wsx::extension> second;
    if (wsx::parse_extensions(formatted, second)) std::abort();
    if (!wsx::test::same_extensions(first, second)) std::abort();
    if (wsx::format_extensions(second) != formatted) std::abort();
    return 0;
}
