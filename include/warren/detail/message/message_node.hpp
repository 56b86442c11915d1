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

/// Blocks of one size kept for reuse by the thread that freed them, so a loop that
/// publishes and drains every frame stops calling the allocator once warm. At most
/// `limit` blocks are kept per thread; the rest go back to the allocator.
template <std::size_t Size>
class block_pool {
public:
    static constexpr std::size_t limit = 4096;

    [[nodiscard]] static void* take() {
        if (!retired()) {
            cache& c = local();
            if (c.head != nullptr) {
                block* b = c.head;
                c.head = b->next;
                --c.count;
                return b;
            }
        }
        return ::operator new(Size);
    }
    static void give(void* p) noexcept {
        if (!retired()) {
            cache& c = local();
            if (c.count < limit) {
                c.head = ::new (p) block{c.head};
                ++c.count;
                return;
            }
        }
        ::operator delete(p);
    }

private:
    struct block {
        block* next;
    };
    static_assert(Size >= sizeof(block));
    struct cache {
        block* head = nullptr;
        std::size_t count = 0;
        cache() = default;
        cache(const cache&) = delete;
        cache& operator=(const cache&) = delete;
        ~cache() {
            retired() = true; // blocks freed later in this thread's exit go to the allocator
            while (head != nullptr) ::operator delete(std::exchange(head, head->next));
        }
    };
    static cache& local() noexcept {
        thread_local cache c;
        return c;
    }
    static bool& retired() noexcept {
        thread_local bool gone = false; // trivially destructible: readable until the thread ends
        return gone;
    }
};

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
    // Over-aligned messages bypass the pool.
    static void* operator new(std::size_t size, std::align_val_t align) { return ::operator new(size, align); }
    static void operator delete(void* p, std::size_t, std::align_val_t align) noexcept { ::operator delete(p, align); }

    Message message;
    ref_ptr<shared_text<Policy>> exchange;
    std::optional<std::chrono::milliseconds> ttl; ///< from the expiration property, parsed once
    std::size_t body_bytes;
};

} // namespace warren::detail
