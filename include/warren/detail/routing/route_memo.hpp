#pragma once
/// @file detail/routing/route_memo.hpp
/// route_memo: the last route a single-threaded publisher took, for replaying it.

#include <cstdint>
#include <string>
#include <vector>

#include "../../exchange.hpp"

namespace warren::detail {

/// A route remembered by a single-threaded publisher: the queues the key reached, valid
/// while the topology's version is the one it was routed under (0: nothing remembered).
struct route_memo {
    std::string key;
    std::uint64_t version = 0;
    std::vector<destination> targets;
};

} // namespace warren::detail
