#pragma once
/// @file topic_exchange.hpp
/// Topic: routing keys matched against binding patterns with `*` and `#`.

#include <cstddef>
#include <string_view>

#include "exchange.hpp"
#include "topic_matcher.hpp"

namespace warren {

/// Routes by topic pattern, RabbitMQ's way (see topic_matcher). Thread safety: as the
/// exchange concept says.
class topic_exchange {
public:
    static constexpr std::string_view type_name = "topic";
    static constexpr bool routes_by_key_only = true;

    void bind(destination d, std::string_view key, const field_table& /*args*/) { matcher_.insert(key, d); }
    void unbind(destination d, std::string_view key, const field_table& /*args*/) { matcher_.erase(key, d); }
    void route(const routing_view& msg, destination_list& out) const {
        matcher_.match(msg.routing_key, [&out](destination d) { out.add(d); });
    }
    /// Sizes the routing cache (0 turns it off); see topic_matcher::set_cache_capacity.
    /// The broker calls it only under single_threaded, since a cached match writes.
    void set_cache_capacity(std::size_t entries) { matcher_.set_cache_capacity(entries); }
    /// What the routing cache did since it was sized; see topic_matcher::cache_stats.
    [[nodiscard]] const topic_cache_stats& cache_stats() const noexcept { return matcher_.cache_stats(); }

private:
    topic_matcher<destination> matcher_;
};

} // namespace warren
