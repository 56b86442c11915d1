#pragma once
/// @file detail/routing/flat_tables.hpp
/// The topic matcher's word handling: hashing, splitting, comparing and interning words.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace warren::detail {

/// A fast hash for short strings (routing-key words are a few bytes). Words up to 8 bytes
/// take one or two loads and no loop; the final avalanche spreads similar words over a
/// power-of-two table.
[[nodiscard]] inline std::uint64_t hash_bytes(std::string_view s) noexcept {
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    const std::size_t n = s.size();
    auto load32 = [](const unsigned char* q) {
        std::uint32_t v;
        std::memcpy(&v, q, 4);
        return std::uint64_t{v};
    };
    auto load64 = [](const unsigned char* q) {
        std::uint64_t v;
        std::memcpy(&v, q, 8);
        return v;
    };
    std::uint64_t h = 0x9E3779B97F4A7C15ULL * (n + 1);
    if (n >= 8) {
        std::size_t i = 0;
        for (; i + 8 < n; i += 8) h = (h ^ load64(p + i)) * 0xff51afd7ed558ccdULL;
        h = (h ^ load64(p + n - 8)) * 0xc4ceb9fe1a85ec53ULL; // the last 8, overlapping
    } else if (n >= 4) {
        h ^= load32(p) | (load32(p + n - 4) << 32);
        h *= 0xff51afd7ed558ccdULL;
    } else if (n > 0) {
        h ^= std::uint64_t{p[0]} | (std::uint64_t{p[n / 2]} << 8) | (std::uint64_t{p[n - 1]} << 16);
        h *= 0xff51afd7ed558ccdULL;
    }
    h ^= h >> 32;
    h *= 0xd6e8feb86659fd93ULL;
    h ^= h >> 32;
    return h;
}

/// Byte equality of two strings of equal length `n`, without a library call for short ones.
[[nodiscard]] inline bool equal_bytes(const char* a, const char* b, std::size_t n) noexcept {
    auto load32 = [](const char* q) {
        std::uint32_t v;
        std::memcpy(&v, q, 4);
        return v;
    };
    auto load64 = [](const char* q) {
        std::uint64_t v;
        std::memcpy(&v, q, 8);
        return v;
    };
    if (n >= 8) {
        if (n > 16) return std::memcmp(a, b, n) == 0;
        return load64(a) == load64(b) && load64(a + n - 8) == load64(b + n - 8);
    }
    if (n >= 4) return load32(a) == load32(b) && load32(a + n - 4) == load32(b + n - 4);
    for (std::size_t i = 0; i < n; ++i) {
        if (a[i] != b[i]) return false;
    }
    return true;
}

/// Position of the first '.' in [p, p + n), or n. Eight bytes at a time (SWAR), since a
/// routing key is mostly short words between dots.
[[nodiscard]] inline std::size_t find_dot(const char* p, std::size_t n) noexcept {
    constexpr std::uint64_t ones = 0x0101010101010101ULL;
    constexpr std::uint64_t highs = 0x8080808080808080ULL;
    constexpr std::uint64_t dots = 0x2E2E2E2E2E2E2E2EULL;
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        std::uint64_t v;
        std::memcpy(&v, p + i, 8);
        v ^= dots; // a '.' byte becomes zero
        const std::uint64_t zero = (v - ones) & ~v & highs;
        if (zero != 0) return i + static_cast<std::size_t>(__builtin_ctzll(zero) / 8);
    }
    for (; i < n; ++i) {
        if (p[i] == '.') return i;
    }
    return n;
}

/// Maps words to small integer ids, so the trie's edges are keyed by integers. Ids are
/// counted: a word used by no pattern any more is forgotten and its id reused. Its slot
/// table halves when less than an eighth full; compact() renumbers the ids densely.
class word_table {
public:
    /// The id no stored word has; routing-key words the table does not know map to it.
    static constexpr std::uint32_t unknown = 0;

    word_table() { slots_.assign(16, slot{}); }

    /// The id of `word`, or `unknown`.
    [[nodiscard]] std::uint32_t find(std::string_view word) const noexcept {
        const std::uint64_t h = hash_bytes(word);
        const std::size_t mask = slots_.size() - 1;
        for (std::size_t i = static_cast<std::size_t>(h) & mask;; i = (i + 1) & mask) {
            const slot& s = slots_[i];
            if (s.id == unknown) return unknown;
            if (s.hash == h && words_[s.id].text.size() == word.size() &&
                equal_bytes(words_[s.id].text.data(), word.data(), word.size())) {
                return s.id;
            }
        }
    }

    /// Whether `id` is a stored word equal to the `size` bytes at `text`.
    [[nodiscard]] bool holds(std::uint32_t id, const char* text, std::size_t size) const noexcept {
        if (id >= words_.size() || words_[id].uses == 0) return false;
        const std::string& w = words_[id].text;
        return w.size() == size && equal_bytes(w.data(), text, size);
    }

    /// The id of `word`, adding it if needed; counts one more use.
    std::uint32_t acquire(std::string_view word) {
        if (const std::uint32_t id = find(word); id != unknown) {
            ++words_[id].uses;
            return id;
        }
        if ((size_ + 1) * 4 > slots_.size() * 3) rehash(slots_.size() * 2);
        std::uint32_t id;
        if (!free_ids_.empty()) {
            id = free_ids_.back();
            free_ids_.pop_back();
        } else {
            if (words_.empty()) words_.emplace_back(); // id 0 is `unknown`
            id = static_cast<std::uint32_t>(words_.size());
            words_.emplace_back();
        }
        words_[id].text.assign(word);
        words_[id].uses = 1;
        insert_slot(slot{hash_bytes(word), id});
        ++size_;
        return id;
    }

    /// Counts one use less of `id`; forgets the word at zero and then returns true.
    bool release(std::uint32_t id) {
        if (--words_[id].uses > 0) return false;
        const std::uint64_t h = hash_bytes(words_[id].text);
        const std::size_t mask = slots_.size() - 1;
        std::size_t i = static_cast<std::size_t>(h) & mask;
        while (slots_[i].id != id) i = (i + 1) & mask;
        erase_slot(i);
        std::string().swap(words_[id].text); // gives back a long word's buffer
        free_ids_.push_back(id);
        --size_;
        if (size_ * 8 < slots_.size() && slots_.size() > 16) {
            std::size_t capacity = 16;
            while (capacity < size_ * 2) capacity *= 2;
            rehash(capacity);
        }
        return true;
    }

    /// Whether most ids are free, so that compact() would give memory back.
    [[nodiscard]] bool sparse() const noexcept { return words_.size() >= 64 && free_ids_.size() * 2 > words_.size(); }
    /// Renumbers the words 1, 2, ... in their current order and gives back the unused
    /// space; returns the new id of each old one (`unknown` for a free id).
    std::vector<std::uint32_t> compact() {
        std::vector<std::uint32_t> renamed(words_.size(), unknown);
        std::vector<entry> kept;
        kept.reserve(size_ + 1);
        kept.emplace_back(); // id 0 is `unknown`
        for (std::uint32_t id = 1; id < words_.size(); ++id) {
            if (words_[id].uses == 0) continue;
            renamed[id] = static_cast<std::uint32_t>(kept.size());
            kept.push_back(std::move(words_[id]));
        }
        words_ = std::move(kept);
        std::vector<std::uint32_t>().swap(free_ids_);
        std::size_t capacity = 16;
        while (capacity * 3 < size_ * 4 + 4) capacity *= 2;
        std::vector<slot>(capacity, slot{}).swap(slots_);
        for (std::uint32_t id = 1; id < words_.size(); ++id) insert_slot(slot{hash_bytes(words_[id].text), id});
        return renamed;
    }

    /// One past the largest id in use, for tables indexed by word id.
    [[nodiscard]] std::size_t id_limit() const noexcept { return words_.size(); }
    /// Bytes held, for memory accounting.
    [[nodiscard]] std::size_t memory_bytes() const noexcept {
        std::size_t bytes = slots_.capacity() * sizeof(slot) + words_.capacity() * sizeof(entry) +
                            free_ids_.capacity() * sizeof(std::uint32_t);
        for (const auto& w : words_) bytes += w.text.capacity() > 15 ? w.text.capacity() : 0;
        return bytes;
    }

private:
    struct slot {
        std::uint64_t hash = 0;
        std::uint32_t id = unknown;
    };
    struct entry {
        std::string text;
        std::uint32_t uses = 0;
    };

    void insert_slot(slot s) {
        const std::size_t mask = slots_.size() - 1;
        std::size_t i = static_cast<std::size_t>(s.hash) & mask;
        while (slots_[i].id != unknown) i = (i + 1) & mask;
        slots_[i] = s;
    }
    // Backward-shift deletion keeps linear probing free of tombstones.
    void erase_slot(std::size_t hole) {
        const std::size_t mask = slots_.size() - 1;
        for (std::size_t i = (hole + 1) & mask; slots_[i].id != unknown; i = (i + 1) & mask) {
            const std::size_t home = static_cast<std::size_t>(slots_[i].hash) & mask;
            if (((i - home) & mask) >= ((i - hole) & mask)) {
                slots_[hole] = slots_[i];
                hole = i;
            }
        }
        slots_[hole] = slot{};
    }
    void rehash(std::size_t capacity) {
        std::vector<slot> old = std::move(slots_);
        slots_.assign(capacity, slot{});
        for (const slot& s : old) {
            if (s.id != unknown) insert_slot(s);
        }
    }

    std::vector<slot> slots_;
    std::vector<entry> words_;
    std::vector<std::uint32_t> free_ids_;
    std::size_t size_ = 0;
};

} // namespace warren::detail
