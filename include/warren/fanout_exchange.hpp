#pragma once
/// @file fanout_exchange.hpp
/// Fanout: every bound destination gets every message; keys are ignored.

#include <string_view>

#include "detail/routing/destination_counts.hpp"
#include "exchange.hpp"

namespace warren {

/// Routes each message to all its destinations, whatever the routing key. Binding and
/// unbinding are O(1) however many destinations it has.
/// Thread safety: as the exchange concept says (the broker serialises writes).
class fanout_exchange {
public:
    static constexpr std::string_view type_name = "fanout";
    /// Each destination once, however many bindings keep it (destination_counts).
    static constexpr bool routes_each_destination_once = true;
    static constexpr bool routes_by_key_only = true;

    void bind(destination d, std::string_view /*key*/, const field_table& /*args*/) { destinations_.add(d); }
    void unbind(destination d, std::string_view /*key*/, const field_table& /*args*/) { (void)destinations_.remove(d); }
    void route(const routing_view& /*msg*/, destination_list& out) const { destinations_.route(out); }

private:
    // A destination bound under several keys routes once; its count says how many
    // bindings keep it here.
    detail::destination_counts destinations_;
};

} // namespace warren
