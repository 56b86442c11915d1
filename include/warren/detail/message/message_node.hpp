#pragma once
/// @file detail/message/message_node.hpp
/// The shared, immutable form a message takes once published, and the pool it lives in.

#include <chrono>
#include <cstddef>
#include <new>
#include <optional>
#include <ranges>
#include <string>
#include <utility>

#include "../core/block_pool.hpp"
#include "../core/ref_ptr.hpp"
#include "../core/shared_text.hpp"

namespace warren::detail {

template <class Body>
concept byte_range = std::ranges::sized_range<const Body> && sizeof(std::ranges::range_value_t<const Body>) == 1;

/// The bytes a body counts for in x-max-length-bytes: the size of a range of byte-sized
/// elements (std::string, std::vector<std::byte>, ...), else the size of the object.
template <class Body>
[[nodiscard]] std::size_t body_size(const Body& body) noexcept {
    if constexpr (byte_range<Body>) {
        return static_cast<std::size_t>(std::ranges::size(body));
    } else {
        return sizeof(Body);
    }
}

/// A published message and where it came from. Queues hold references to one node, so
/// a message routed to ten queues is stored once. Under single_threaded, nodes come from
/// a per-thread block_pool.
template <class Message, class Policy>
struct message_node : ref_counted<Policy> {
    message_node(Message m, ref_ptr<shared_text<Policy>> exchange_name,
                 std::optional<std::chrono::milliseconds> message_ttl = {})
        : message(std::move(m)), exchange(std::move(exchange_name)), ttl(message_ttl),
          body_bytes(body_size(message.body)) {}

    [[nodiscard]] const std::string& exchange_name() const noexcept { return exchange->value; }

    static void* operator new(std::size_t size) {
        if constexpr (!Policy::thread_safe) {
            if (size == sizeof(message_node)) return block_pool<sizeof(message_node)>::take();
        }
        return ::operator new(size);
    }
    static void operator delete(void* p, std::size_t size) noexcept {
        if constexpr (!Policy::thread_safe) {
            if (size == sizeof(message_node)) return block_pool<sizeof(message_node)>::give(p);
        }
        ::operator delete(p);
    }
    /// The pool's idle rule, and shrink() (see block_pool); nothing under multi_threaded,
    /// whose nodes come from the allocator.
    static void end_of_pool_period() noexcept {
        if constexpr (!Policy::thread_safe) block_pool<sizeof(message_node)>::end_of_period();
    }
    static void shrink_pool() noexcept {
        if constexpr (!Policy::thread_safe) block_pool<sizeof(message_node)>::shrink();
    }
    // Over-aligned messages bypass the pool.
    static void* operator new(std::size_t size, std::align_val_t align) { return ::operator new(size, align); }
    static void operator delete(void* p, std::size_t, std::align_val_t align) noexcept { ::operator delete(p, align); }

    Message message;
    ref_ptr<shared_text<Policy>> exchange;
    std::optional<std::chrono::milliseconds> ttl; ///< from the expiration property, parsed once
    std::size_t body_bytes;
};

} // namespace warren::detail
