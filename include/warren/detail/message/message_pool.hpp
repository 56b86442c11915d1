#pragma once
/// @file detail/message/message_pool.hpp
/// message_pool: where a stored message's blocks come from under each threading policy.

#include <cstddef>
#include <type_traits>

#include "../core/block_pool.hpp"
#include "../core/depot_block_pool.hpp"

namespace warren::detail {

/// The pool of `Size`-byte blocks for stored messages (their nodes and properties) under
/// `Policy`: a per-thread block_pool under single_threaded, where the thread that makes a
/// message frees it; a depot_block_pool under multi_threaded, where a message made on a
/// producer thread is freed on a consumer thread and its block must find its way back.
template <class Policy>
struct message_pool {
    template <std::size_t Size>
    using type = std::conditional_t<Policy::thread_safe, depot_block_pool<Size>, block_pool<Size>>;
};

} // namespace warren::detail
