// A consumer of warren::compiled (the compiled mode): issue 10's ten-line program, the one
// the compile-time benchmark times, built against the precompiled standard brokers.
#ifndef WARREN_COMPILED_LIB
#    error "warren::compiled must define WARREN_COMPILED_LIB"
#endif
#include "../../bench/compile_time/warren_ten_lines.cpp"
