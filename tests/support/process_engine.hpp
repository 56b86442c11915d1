// Helpers for the process_engine tests: delivering until idle, times on a manual clock,
// questions about an instance's history, and a substring CHECK.
#pragma once

#include <algorithm>
#include <cstddef>
#include <string>
#include <vector>

#include <warren/patterns/process_engine.hpp>
#include <warren/warren.hpp>

#include "support/catch.hpp"

namespace warren_test {

/// Delivers on `b` until nothing is left to deliver.
template <class Broker>
void settle(Broker& b) {
    while (b.dispatch() != 0) {
    }
}

/// The time point `d` after a manual_clock's start (its epoch).
inline warren::clock::time_point at(warren::clock::duration d) { return warren::clock::time_point(d); }

/// The steps of the entries in history `h` with event `e`, in order.
inline std::vector<std::string> steps_with(const std::vector<warren::history_entry>& h, warren::history_event e) {
    std::vector<std::string> out;
    for (const auto& x : h) {
        if (x.event == e) out.push_back(x.step);
    }
    return out;
}

/// How many entries in history `h` have event `e`.
inline std::size_t count_events(const std::vector<warren::history_entry>& h, warren::history_event e) {
    return static_cast<std::size_t>(std::count_if(h.begin(), h.end(), [&](const auto& x) { return x.event == e; }));
}

/// Whether history `h` has an entry with event `e`.
inline bool has_event(const std::vector<warren::history_entry>& h, warren::history_event e) {
    return std::any_of(h.begin(), h.end(), [&](const auto& x) { return x.event == e; });
}

/// Whether history `h` has an entry for step `step` with event `e`.
inline bool has_event(const std::vector<warren::history_entry>& h, const std::string& step, warren::history_event e) {
    return std::any_of(h.begin(), h.end(), [&](const auto& x) { return x.step == step && x.event == e; });
}

/// `needle` if `text` holds it, else all of `text`: a failed CHECK_CONTAINS shows the text.
/// (Catch2 2 and 3 name their substring matcher differently.)
inline std::string part_of(const std::string& text, const std::string& needle) {
    return text.find(needle) != std::string::npos ? needle : text;
}

} // namespace warren_test

/// CHECKs that string `text` contains `needle`, showing all of `text` when it does not.
#define CHECK_CONTAINS(text, needle) CHECK(warren_test::part_of(text, needle) == std::string(needle))
