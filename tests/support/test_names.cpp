// Compiled into every test executable. ctest registers each Catch2 test case by name
// (catch_discover_tests) and splits a name at ';' (a CMake list separator): such a test
// would run as a filter that matches nothing and pass without running.

#include <string>

#include "support/catch.hpp"

TEST_CASE("test names: none holds a semicolon, which ctest would split into a filter that runs nothing", "[meta]") {
#if defined(WARREN_CATCH2_MAJOR) && WARREN_CATCH2_MAJOR >= 3
    for (const auto* info : Catch::getRegistryHub().getTestCaseRegistry().getAllInfos()) {
        const std::string name = info->name;
#else
    for (const auto& test : Catch::getRegistryHub().getTestCaseRegistry().getAllTests()) {
        const std::string name = test.name;
#endif
        INFO(name);
        CHECK(name.find(';') == std::string::npos);
    }
}
