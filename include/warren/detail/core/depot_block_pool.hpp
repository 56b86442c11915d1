#pragma once
/// @file detail/core/depot_block_pool.hpp
/// depot_block_pool: fixed-size blocks reused across threads, passed between them 64 at a
/// time through a shared depot.

#include <cstddef>
#include <mutex>
#include <new>

namespace warren::detail {

/// Blocks of one size for messages that are made on one thread and freed on another (a
/// producer thread publishing, a consumer thread taking): each thread keeps a small cache,
/// a thread that frees more than it takes hands full magazines of `magazine` blocks to a
/// depot shared by all threads, and a thread whose cache is empty takes one magazine from
/// it. So across threads a block costs a few instructions of its own and one lock per
/// magazine on each side, where the allocator would take a lock per block (glibc's arena
/// of the thread that allocated it).
///
/// Memory: a thread's cache holds fewer than 2 × `magazine` blocks; the depot holds at most
/// `max_magazines` (beyond, a magazine goes back to the allocator), and shrink() frees the
/// depot and the calling thread's cache. A thread that ends hands its full magazines to the
/// depot and frees the rest. Thread safety: take() and give() from any thread.
template <std::size_t Size>
class depot_block_pool {
public:
    /// Blocks that move between a thread's cache and the depot at once.
    static constexpr std::size_t magazine = 64;
    /// Magazines the depot keeps at most: 65,536 blocks.
    static constexpr std::size_t max_magazines = 1024;

    [[nodiscard]] static void* take() {
        if (!retired()) {
            cache& c = local();
            if (c.head == nullptr) c.refill();
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
            c.head = ::new (p) block{c.head, nullptr};
            if (++c.count == 2 * magazine) c.hand_over_one();
            return;
        }
        ::operator delete(p);
    }

    /// Nothing: a cache never holds more than 2 × `magazine` blocks and the depot is
    /// bounded (see the class comment).
    static void end_of_period() noexcept {}
    /// Frees the calling thread's cache and every magazine in the depot.
    static void shrink() noexcept {
        if (!retired()) local().free_all();
        block* magazines = nullptr;
        {
            depot& d = shared();
            std::lock_guard lock(d.mutex);
            magazines = d.magazines;
            d.magazines = nullptr;
            d.count = 0;
        }
        while (magazines != nullptr) {
            block* next = magazines->next_magazine;
            free_chain(magazines);
            magazines = next;
        }
    }
    /// Blocks the calling thread's cache and the depot hold for reuse.
    [[nodiscard]] static std::size_t cached() noexcept {
        std::size_t n = retired() ? 0 : local().count;
        depot& d = shared();
        std::lock_guard lock(d.mutex);
        return n + d.count * magazine;
    }

private:
    struct block {
        block* next;          // the next block of its chain
        block* next_magazine; // in the depot, on a magazine's first block: the next magazine
    };
    static_assert(Size >= sizeof(block));

    struct depot {
        std::mutex mutex;
        block* magazines = nullptr; // each a chain of `magazine` blocks
        std::size_t count = 0;      // magazines held
    };
    /// Never destroyed: threads may hand magazines over while the program exits.
    static depot& shared() noexcept {
        static depot* const d = new depot;
        return *d;
    }

    static void free_chain(block* b) noexcept {
        while (b != nullptr) {
            block* next = b->next;
            ::operator delete(b);
            b = next;
        }
    }

    struct cache {
        block* head = nullptr;
        std::size_t count = 0;
        cache() = default;
        cache(const cache&) = delete;
        cache& operator=(const cache&) = delete;
        ~cache() {
            retired() = true; // blocks freed later in this thread's exit go to the allocator
            while (count >= magazine) hand_over_one();
            free_all();
        }
        /// Moves the `magazine` blocks at the top of the cache to the depot (or frees them
        /// when it is full).
        void hand_over_one() noexcept {
            block* first = head;
            block* last = head;
            for (std::size_t i = 1; i < magazine; ++i) last = last->next;
            head = last->next;
            count -= magazine;
            last->next = nullptr;
            {
                depot& d = shared();
                std::lock_guard lock(d.mutex);
                if (d.count < max_magazines) {
                    first->next_magazine = d.magazines;
                    d.magazines = first;
                    ++d.count;
                    return;
                }
            }
            free_chain(first);
        }
        /// Takes one magazine from the depot, if it has one.
        void refill() noexcept {
            depot& d = shared();
            std::lock_guard lock(d.mutex);
            if (d.magazines == nullptr) return;
            head = d.magazines;
            d.magazines = head->next_magazine;
            --d.count;
            count = magazine;
        }
        void free_all() noexcept {
            free_chain(head);
            head = nullptr;
            count = 0;
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

} // namespace warren::detail
