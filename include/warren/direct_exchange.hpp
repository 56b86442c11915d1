#pragma once
/// @file direct_exchange.hpp
/// Direct: a message goes to the destinations bound with exactly its routing key.

#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "exchange.hpp"

namespace warren {

/// Routes by exact routing-key equality. Binding arguments are part of a binding's identity
/// but do not affect routing. Thread safety: as the exchange concept says.
class direct_exchange {
public:
    static constexpr std::string_view type_name = "direct";

    void bind(destination d, std::string_view key, const field_table& /*args*/) {
        auto& entries = table_.try_emplace(std::string(key)).first->second;
        auto it = find(entries, d);
        if (it != entries.end()) ++it->second;
        else entries.emplace_back(d, 1U);
    }
    void unbind(destination d, std::string_view key, const field_table& /*args*/) {
        auto slot = table_.find(key);
        if (slot == table_.end()) return;
        auto& entries = slot->second;
        auto it = find(entries, d);
        if (it == entries.end() || --it->second > 0) return;
        entries.erase(it);
        if (entries.empty()) table_.erase(slot);
    }
    void route(const routing_view& msg, destination_list& out) const {
        auto slot = table_.find(msg.routing_key);
        if (slot == table_.end()) return;
        for (const auto& entry : slot->second) out.add(entry.first);
    }

private:
    using counted = std::vector<std::pair<destination, std::uint32_t>>;
    struct transparent_hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
    };
    static counted::iterator find(counted& entries, destination d) {
        return std::find_if(entries.begin(), entries.end(), [d](const auto& e) { return e.first == d; });
    }
    std::unordered_map<std::string, counted, transparent_hash, std::equal_to<>> table_;
};

} // namespace warren
