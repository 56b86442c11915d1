// The allocation tests' view of the heap: the global operator new and delete of the
// warren_tests_allocation executable are replaced (tests/support/counting_allocator.cpp)
// to count the allocations each thread makes and the bytes the whole process holds.
#pragma once

#include <cstddef>

namespace warren_test {

/// Whether the calling thread's allocations are being counted, and how many it made.
struct allocation_tally {
    bool counting = false;
    std::size_t allocations = 0;
};
allocation_tally& this_thread_tally() noexcept;

/// Bytes the process holds through operator new right now (as the allocator sized them).
std::size_t live_heap_bytes() noexcept;

/// Counts the allocations of the calling thread while it lives.
class allocation_counter {
public:
    allocation_counter() noexcept {
        this_thread_tally().allocations = 0;
        this_thread_tally().counting = true;
    }
    ~allocation_counter() { this_thread_tally().counting = false; }
    allocation_counter(const allocation_counter&) = delete;
    allocation_counter& operator=(const allocation_counter&) = delete;
    [[nodiscard]] std::size_t count() const noexcept { return this_thread_tally().allocations; }
};

} // namespace warren_test
