#pragma once
/// @file detail/core/hash_index.hpp
/// An open-addressing index from a hash to a small payload (a position, an id, a pointer),
/// whose memory follows its size up and down.

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace warren::detail {

/// Finds payloads by hash in O(1): the owner keeps the keys, and says at each lookup which
/// payload holds the key it wants (`matches(payload)`), so the index stores only a hash and
/// a payload per entry. Linear probing with backward-shift deletion (no tombstones).
///
/// Its table doubles when three quarters full and halves when less than an eighth full, so
/// memory follows the entries down after mass erasure, and churn at one size does not make
/// it grow and shrink in turn.
///
/// Thread safety: a value type; concurrent finds are safe while nobody inserts or erases.
template <class Payload>
class hash_index {
public:
    /// Entries the table holds before it first grows, and at least.
    static constexpr std::size_t min_capacity = 16;

    /// The payload of the entry with hash `hash` for which `matches(payload)` holds, or
    /// nullptr.
    template <class Matches>
    [[nodiscard]] Payload* find(std::uint64_t hash, Matches&& matches) noexcept {
        if (slots_.empty()) return nullptr;
        hash = stored(hash);
        const std::size_t mask = slots_.size() - 1;
        for (std::size_t i = hash & mask;; i = (i + 1) & mask) {
            slot& s = slots_[i];
            if (s.hash == vacant) return nullptr;
            if (s.hash == hash && matches(std::as_const(s.payload))) return &s.payload;
        }
    }
    template <class Matches>
    [[nodiscard]] const Payload* find(std::uint64_t hash, Matches&& matches) const noexcept {
        return const_cast<hash_index*>(this)->find(hash, std::forward<Matches>(matches));
    }

    /// Adds an entry; the caller knows that no entry matches it yet.
    void insert(std::uint64_t hash, Payload payload) {
        if (slots_.empty()) slots_.assign(min_capacity, slot{});
        if ((size_ + 1) * 4 > slots_.size() * 3) rehash(slots_.size() * 2);
        place(slot{stored(hash), std::move(payload)});
        ++size_;
    }

    /// Removes the entry with hash `hash` for which `matches(payload)` holds; returns
    /// whether there was one.
    template <class Matches>
    bool erase(std::uint64_t hash, Matches&& matches) {
        if (slots_.empty()) return false;
        hash = stored(hash);
        const std::size_t mask = slots_.size() - 1;
        std::size_t hole = hash & mask;
        for (;; hole = (hole + 1) & mask) {
            const slot& s = slots_[hole];
            if (s.hash == vacant) return false;
            if (s.hash == hash && matches(s.payload)) break;
        }
        for (std::size_t i = (hole + 1) & mask; slots_[i].hash != vacant; i = (i + 1) & mask) {
            const std::size_t home = slots_[i].hash & mask;
            if (((i - home) & mask) >= ((i - hole) & mask)) {
                slots_[hole] = std::move(slots_[i]);
                hole = i;
            }
        }
        slots_[hole] = slot{};
        --size_;
        if (size_ * 8 < slots_.size() && slots_.size() > min_capacity) shrink();
        return true;
    }

    /// Removes every entry and gives back the table.
    void clear() noexcept {
        std::vector<slot>().swap(slots_);
        size_ = 0;
    }

    [[nodiscard]] std::size_t size() const noexcept { return size_; }
    [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
    /// Bytes of its table.
    [[nodiscard]] std::size_t memory_bytes() const noexcept { return slots_.capacity() * sizeof(slot); }

private:
    static constexpr std::uint64_t vacant = 0;
    struct slot {
        std::uint64_t hash = vacant;
        Payload payload{};
    };
    /// Hash 0 marks a vacant slot, so a real hash of 0 is stored as 1.
    static std::uint64_t stored(std::uint64_t hash) noexcept { return hash == vacant ? 1 : hash; }

    void place(slot s) {
        const std::size_t mask = slots_.size() - 1;
        std::size_t i = s.hash & mask;
        while (slots_[i].hash != vacant) i = (i + 1) & mask;
        slots_[i] = std::move(s);
    }
    void rehash(std::size_t capacity) {
        std::vector<slot> old = std::move(slots_);
        slots_.assign(capacity, slot{});
        for (slot& s : old) {
            if (s.hash != vacant) place(std::move(s));
        }
    }
    void shrink() {
        // To half full at most: room to grow by half again before doubling.
        std::size_t capacity = min_capacity;
        while (capacity < size_ * 2) capacity *= 2;
        if (capacity < slots_.size()) rehash(capacity);
    }

    std::vector<slot> slots_;
    std::size_t size_ = 0;
};

/// Combines `value` into the running hash `seed` (boost's hash_combine, on 64 bits).
[[nodiscard]] constexpr std::uint64_t combine_hash(std::uint64_t seed, std::uint64_t value) noexcept {
    return seed ^ (value + 0x9E3779B97F4A7C15ULL + (seed << 6) + (seed >> 2));
}

/// A well-spread 64-bit hash of a 64-bit value (the splitmix64 finaliser).
[[nodiscard]] constexpr std::uint64_t mix64(std::uint64_t x) noexcept {
    x ^= x >> 30;
    x *= 0xBF58476D1CE4E5B9ULL;
    x ^= x >> 27;
    x *= 0x94D049BB133111EBULL;
    x ^= x >> 31;
    return x;
}

} // namespace warren::detail
