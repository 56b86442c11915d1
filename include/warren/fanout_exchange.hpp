#pragma once
/// @file fanout_exchange.hpp
/// Fanout: every bound destination gets every message; keys are ignored.

#include <algorithm>
#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

#include "exchange.hpp"

namespace warren {

/// Routes each message to all its destinations, whatever the routing key.
/// Thread safety: as the exchange concept says (the broker serialises writes).
class fanout_exchange {
public:
    static constexpr std::string_view type_name = "fanout";

    void bind(destination d, std::string_view /*key*/, const field_table& /*args*/) {
        auto it = find(d);
        if (it != counted_.end()) ++it->second;
        else counted_.emplace_back(d, 1U);
    }
    void unbind(destination d, std::string_view /*key*/, const field_table& /*args*/) {
        auto it = find(d);
        if (it != counted_.end() && --it->second == 0) counted_.erase(it);
    }
    void route(const routing_view& /*msg*/, destination_list& out) const {
        for (const auto& entry : counted_) out.add(entry.first);
    }

private:
    // A destination bound under several keys routes once; the count says how many
    // bindings keep it here.
    std::vector<std::pair<destination, std::uint32_t>>::iterator find(destination d) {
        return std::find_if(counted_.begin(), counted_.end(), [d](const auto& e) { return e.first == d; });
    }
    std::vector<std::pair<destination, std::uint32_t>> counted_;
};

} // namespace warren
