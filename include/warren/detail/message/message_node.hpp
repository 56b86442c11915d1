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
/// publishes and drains every frame stops calling the allocator once warm, however many
/// messages a frame holds in flight: the pool grows to the thread's high-water mark.
///
/// It gives memory back two ways: shrink() frees every block it holds, and the idle rule,
/// applied by end_of_period() (basic_broker::dispatch calls it when it returns): a pool
/// holding more than twice the most blocks in use at once during the period just ended,
/// plus `slack`, frees the blocks above that bound. So a steady frame loop keeps what its
/// frames need, and one burst's memory goes back after one quieter period.
/// Thread safety: per thread; blocks may be freed on another thread (they then join that
/// thread's pool).
template <std::size_t Size>
class block_pool {
public:
    /// Blocks a pool keeps in any case, beyond twice the period's peak.
    static constexpr std::size_t slack = 4096;

    [[nodiscard]] static void* take() {
        if (!retired()) {
            cache& c = local();
            if (++c.in_use > c.peak) c.peak = c.in_use;
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
            if (c.in_use > 0) --c.in_use; // 0 when the block was taken on another thread
            c.head = ::new (p) block{c.head};
            ++c.count;
            return;
        }
        ::operator delete(p);
    }

    /// The idle rule (see the class comment); starts the next period.
    static void end_of_period() noexcept {
        if (retired()) return;
        cache& c = local();
        const std::size_t bound = 2 * c.peak + slack;
        while (c.count > bound) c.pop_and_free();
        c.peak = c.in_use;
    }
    /// Frees every block this thread's pool holds.
    static void shrink() noexcept {
        if (retired()) return;
        cache& c = local();
        while (c.count > 0) c.pop_and_free();
        c.peak = c.in_use;
    }
    /// Blocks this thread's pool holds for reuse.
    [[nodiscard]] static std::size_t cached() noexcept { return retired() ? 0 : local().count; }

private:
    struct block {
        block* next;
    };
    static_assert(Size >= sizeof(block));
    struct cache {
        block* head = nullptr;
        std::size_t count = 0;  // blocks held
        std::size_t in_use = 0; // blocks taken on this thread and not given back
        std::size_t peak = 0;   // the most in use at once this period
        cache() = default;
        cache(const cache&) = delete;
        cache& operator=(const cache&) = delete;
        ~cache() {
            retired() = true; // blocks freed later in this thread's exit go to the allocator
            while (count > 0) pop_and_free();
        }
        void pop_and_free() noexcept {
            block* b = head;
            head = b->next;
            --count;
            ::operator delete(b);
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
