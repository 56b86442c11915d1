#pragma once
/// @file detail/core/block_pool.hpp
/// block_pool: per-thread reuse of fixed-size blocks, growing to the thread's high-water mark.

#include <array>
#include <cstddef>
#include <new>
#include <utility>

namespace warren::detail {

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

/// The pools (`Pool<Size>`: block_pool or depot_block_pool) of several sizes, each size
/// once however often it is listed: blocks of one size are one pool, and its idle rule must
/// run once per period (a second run would read a peak the first one had just reset).
/// Thread safety: as the pools.
template <template <std::size_t> class Pool, std::size_t... Sizes>
class pool_set {
public:
    static void end_of_period() noexcept {
        each([](auto size) { Pool<decltype(size)::value>::end_of_period(); });
    }
    static void shrink() noexcept {
        each([](auto size) { Pool<decltype(size)::value>::shrink(); });
    }
    /// Blocks this thread's pools hold for reuse.
    [[nodiscard]] static std::size_t cached() noexcept {
        std::size_t n = 0;
        each([&n](auto size) { n += Pool<decltype(size)::value>::cached(); });
        return n;
    }

private:
    static constexpr std::array<std::size_t, sizeof...(Sizes)> sizes{Sizes...};
    /// Whether sizes[I] is listed for the first time at I.
    template <std::size_t I>
    static constexpr bool first_listing() noexcept {
        for (std::size_t j = 0; j < I; ++j) {
            if (sizes[j] == sizes[I]) return false;
        }
        return true;
    }
    template <class F>
    static void each(F&& f) noexcept {
        [&f]<std::size_t... I>(std::index_sequence<I...>) {
            ((first_listing<I>() ? f(std::integral_constant<std::size_t, sizes[I]>{}) : void()), ...);
        }(std::make_index_sequence<sizeof...(Sizes)>{});
    }
};

} // namespace warren::detail
