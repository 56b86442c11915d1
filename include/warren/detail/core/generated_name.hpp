#pragma once
/// @file detail/core/generated_name.hpp
/// generated_name(): names like RabbitMQ's amq.gen-<22 characters>.

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "hash_index.hpp"

namespace warren::detail {

/// A seed that differs between brokers of one process and between runs: the time and an
/// address, mixed. (Names need to look random and not repeat, not to be unguessable.)
[[nodiscard]] inline std::uint64_t name_seed(const void* owner) noexcept {
    const auto now = static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    return mix64(now ^ mix64(reinterpret_cast<std::uintptr_t>(owner)));
}

/// `prefix` and 22 characters of [A-Za-z0-9_-], as RabbitMQ's generated names. Each serial
/// owns three steps of the splitmix64 sequence from `seed`, so every character carries
/// fresh bits and distinct serials give distinct names.
[[nodiscard]] inline std::string generated_name(std::string_view prefix, std::uint64_t seed, std::uint64_t serial) {
    static constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    std::string name(prefix);
    std::uint64_t state = seed + 0x9E3779B97F4A7C15ULL * 3 * serial;
    std::uint64_t x = 0;
    for (int i = 0; i < 22; ++i) {
        if (i % 10 == 0) { // fresh bits every ten characters
            state += 0x9E3779B97F4A7C15ULL;
            x = mix64(state);
        }
        name += alphabet[x & 63U];
        x >>= 6;
    }
    return name;
}

} // namespace warren::detail
