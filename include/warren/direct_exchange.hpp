#pragma once
/// @file direct_exchange.hpp
/// Direct: a message goes to the destinations bound with exactly its routing key.

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "detail/routing/destination_counts.hpp"
#include "exchange.hpp"

namespace warren {

/// Routes by exact routing-key equality. Binding arguments are part of a binding's identity
/// but do not affect routing. Binding and unbinding are O(1) however many keys it has and
/// however many destinations share a key. Thread safety: as the exchange concept says.
class direct_exchange {
public:
    static constexpr std::string_view type_name = "direct";
    /// One destination per key once, however many bindings keep it (destination_counts).
    static constexpr bool routes_each_destination_once = true;
    static constexpr bool routes_by_key_only = true;

    void bind(destination d, std::string_view key, const field_table& /*args*/) {
        table_.try_emplace(std::string(key)).first->second.add(d);
    }
    void unbind(destination d, std::string_view key, const field_table& /*args*/) {
        auto slot = table_.find(key);
        if (slot == table_.end() || !slot->second.remove(d)) return;
        if (slot->second.empty()) {
            table_.erase(slot);
            // Memory follows the keys down: the bucket array shrinks once mostly empty.
            if (table_.size() * 8 < table_.bucket_count() && table_.bucket_count() > 64) table_.rehash(table_.size() * 2);
        }
    }
    void route(const routing_view& msg, destination_list& out) const {
        auto slot = table_.find(msg.routing_key);
        if (slot != table_.end()) slot->second.route(out);
    }

private:
    struct transparent_hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
    };
    std::unordered_map<std::string, detail::destination_counts, transparent_hash, std::equal_to<>> table_;
};

} // namespace warren
