// Include Catch2 regardless of major version. Tests include "support/catch.hpp".
// WARREN_CATCH2_MAJOR is defined by tests/CMakeLists.txt.
#pragma once

#if defined(WARREN_CATCH2_MAJOR) && WARREN_CATCH2_MAJOR >= 3
#include <catch2/catch_all.hpp>
#else
#include <catch2/catch.hpp>
#endif
