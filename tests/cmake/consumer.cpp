// A consumer of the installed (or add_subdirectory'd) wsx package.
#include <wsx/wsx.hpp>

#include <cstdio>

int main() {
    std::error_code ec = wsx::error::invalid_utf8;
    if (ec.category() != wsx::error_category()) return 1;
    if (!wsx::is_valid_on_wire(wsx::close_code::normal)) return 1;
    std::puts("wsx consumer ok");
    return 0;
}
