#pragma once
/// @file detail/broker/snapshot.hpp
/// take_snapshot(): a copy of the broker's topology, for basic_broker::snapshot().

#include <algorithm>
#include <string>
#include <string_view>
#include <tuple>

#include "../../topology.hpp"
#include "binding_table.hpp"
#include "exchange_table.hpp"

namespace warren::detail {

/// Every queue goes into a snapshot.
struct every_queue {
    constexpr bool operator()(std::string_view) const noexcept { return true; }
};

/// The exchanges (sorted by name), bindings (by source, destination, key), queues and
/// consumers (in declaration and rotation order) of the tables; of the queues, those whose
/// name `shown` accepts. Topology lock held.
template <threading_policy Policy, class Queues, class Shown = every_queue>
topology_snapshot take_snapshot(const exchange_table<Policy>& exchanges, const Queues& queues,
                                const binding_table<Policy>& bindings, Shown shown = {}) {
    topology_snapshot out;
    exchanges.for_each([&](const exchange_node<Policy>& x) {
        out.exchanges.push_back({x.name, x.type, x.options.durable, x.options.auto_delete, x.options.internal,
                                 x.options.arguments, x.counters()});
        bindings.for_each_from(x.index, [&](const binding& b) {
            const bool to_exchange = b.target.type() == destination::kind::exchange;
            const std::string& name =
                to_exchange ? exchanges.slot(b.target.index())->name : queues.slot(b.target.index())->name();
            out.bindings.push_back({x.name, name, to_exchange, b.key, b.arguments});
        });
    });
    std::sort(out.exchanges.begin(), out.exchanges.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
    std::sort(out.bindings.begin(), out.bindings.end(), [](const auto& a, const auto& b) {
        return std::tie(a.source, a.destination, a.key) < std::tie(b.source, b.destination, b.key);
    });
    for (const auto& q : queues.list().queues) {
        if (!q || !shown(q->name())) continue; // deleted, or not to be shown
        out.queues.push_back({q->name(), q->options(), q->counters()});
        for (const auto& [id, options] : q->consumer_list()) {
            out.consumers.push_back({q->name(), options.tag, options.ack, options.prefetch, options.exclusive,
                                     options.priority, q->is_active_consumer(id)});
        }
    }
    return out;
}

} // namespace warren::detail
