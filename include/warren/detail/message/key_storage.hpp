#pragma once
/// @file detail/message/key_storage.hpp
/// key_storage: room for an object followed by its routing key, in a few size classes.

#include <cstddef>
#include <new>

#include "../../routing_key.hpp"
#include "../core/block_pool.hpp"

namespace warren::detail {

/// Allocates room for a `Head` followed by a routing key's bytes, in one block: a key of
/// any length up to 255 bytes costs no allocation of its own. The block is one of a few
/// size classes, the key's room rounded up to the next of `Capacity...`, each class served
/// by a `Pool<Size>` (block_pool for single_threaded, depot_block_pool for blocks freed on
/// other threads), so that once warm storing a message allocates nothing; an over-aligned
/// Head comes from the allocator. The caller constructs the Head at the block's start and
/// copies the key after it. Thread safety: as the pool.
template <class Head, template <std::size_t> class Pool, std::size_t... Capacity>
class basic_key_storage {
public:
    /// The block_pools of the key classes, and those of `Also...` (each size once). (A
    /// class, not an alias: Head may be incomplete where this class is named.)
    template <std::size_t... Also>
    struct pools : pool_set<Pool, (sizeof(Head) + Capacity)..., Also...> {};
    /// Whether blocks come from the pools. (A function: Head may be incomplete where this
    /// class is named.)
    [[nodiscard]] static constexpr bool pooled() noexcept {
        return alignof(Head) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__;
    }

    /// Room for a Head and `key_length` bytes after it, aligned for Head.
    [[nodiscard]] static void* allocate(std::size_t key_length) {
        if constexpr (pooled()) {
            void* block = nullptr;
            // The first class that holds the key.
            (void)((key_length <= Capacity && (block = Pool<sizeof(Head) + Capacity>::take()) != nullptr) || ...);
            if (block != nullptr) return block;
        }
        if constexpr (alignof(Head) > __STDCPP_DEFAULT_NEW_ALIGNMENT__) {
            return ::operator new(sizeof(Head) + key_length, std::align_val_t{alignof(Head)});
        } else {
            return ::operator new(sizeof(Head) + key_length);
        }
    }
    /// Gives back what allocate(`key_length`) returned.
    static void deallocate(void* block, std::size_t key_length) noexcept {
        if constexpr (pooled()) {
            bool given = false;
            (void)((key_length <= Capacity && (Pool<sizeof(Head) + Capacity>::give(block), given = true)) || ...);
            if (given) return;
        }
        if constexpr (alignof(Head) > __STDCPP_DEFAULT_NEW_ALIGNMENT__) {
            ::operator delete(block, std::align_val_t{alignof(Head)});
        } else {
            ::operator delete(block);
        }
    }
    /// Where the key's bytes go in a block that allocate() returned.
    [[nodiscard]] static unsigned char* key_bytes(void* block) noexcept {
        return static_cast<unsigned char*>(block) + sizeof(Head);
    }
};

/// key_storage with five classes: 16, 32, 64, 128 and 256 bytes of key. A node of a short
/// key wastes nothing for a long one's sake, a long key wastes less than half its room.
template <class Head, template <std::size_t> class Pool>
using key_storage = basic_key_storage<Head, Pool, 16, 32, 64, 128, 256>;

static_assert(max_name_length <= 256, "the largest key class holds every routing key");

} // namespace warren::detail
