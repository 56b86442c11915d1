#pragma once
/// @file compiled.hpp
/// The compiled mode: with WARREN_COMPILED_LIB defined (linking the CMake target
/// warren::compiled defines it), the standard brokers are declared here as instantiated
/// once, in the library (src/warren.cpp), so a program that uses them compiles only its
/// own code. Without it (the default) warren is header-only and this header declares
/// nothing. Other message types and policies are header-only in either mode. In the
/// compiled mode broker.hpp leaves out the built-in exchange types' headers, which only
/// the library's constructor needs: a program that names topic_exchange or topic_matcher
/// includes their headers (or warren.hpp).

#include "broker.hpp"

#if defined(WARREN_COMPILED_LIB)
namespace warren {
extern template class basic_broker<message, single_threaded>;
extern template class basic_broker<message, multi_threaded>;
extern template class basic_queue<message, single_threaded>;
extern template class basic_queue<message, multi_threaded>;
extern template class basic_delivery<message, single_threaded>;
extern template class basic_delivery<message, multi_threaded>;
} // namespace warren
#endif
