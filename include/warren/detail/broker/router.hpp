#pragma once
/// @file detail/broker/router.hpp
/// route(): the queues a message reaches from an exchange, across exchange-to-exchange
/// bindings and alternate exchanges, each queue once.

#include <algorithm>
#include <cstdint>
#include <vector>

#include "../../exchange.hpp"
#include "../routing/route_memo.hpp"
#include "exchange_table.hpp"

namespace warren::detail {

/// Several bindings may lead to one queue; it gets the message once.
inline void one_copy_per_queue(std::vector<destination>& targets) {
    if (targets.size() < 2) return;
    std::sort(targets.begin(), targets.end());
    targets.erase(std::unique(targets.begin(), targets.end()), targets.end());
}

/// Whether a message's route from `exchange` follows from its key alone and the topology:
/// the default exchange, or one bound to queues only, without an alternate, whose type
/// promises routes_by_key_only.
template <threading_policy Policy>
[[nodiscard]] bool route_follows_key(const exchange_node<Policy>& exchange) noexcept {
    if (exchange.name.empty()) return true;
    return exchange.exchange_targets == 0 && exchange.alternate.empty() && exchange.impl->routes_by_key_only();
}

/// Puts into `out` the queues that a message with `view` published to `exchange` reaches.
/// The default exchange (named "") routes to the queue `queues.find(routing_key)` names.
/// Topology lock held (shared).
template <threading_policy Policy, class QueueNames>
void route(const exchange_table<Policy>& exchanges, const QueueNames& queues, const exchange_node<Policy>& exchange,
           const routing_view& view, std::vector<destination>& out) {
    out.clear();
    if (exchange.name.empty()) {
        if (const auto index = queues.find(view.routing_key)) out.push_back(destination(destination::kind::queue, *index));
        return;
    }
    thread_local destination_list found;
    destination_list_access::clear(found);
    if (exchange.exchange_targets == 0 && exchange.alternate.empty()) {
        // Bound to queues only: one exchange's own route is the answer. (The swap keeps
        // both vectors' capacity, so routing allocates nothing once warm.)
        exchange.impl->route(view, found);
        out.swap(destination_list_access::storage(found));
        if (!exchange.impl->routes_each_destination_once()) one_copy_per_queue(out);
        return;
    }
    // Walk the exchanges the message reaches, as RabbitMQ's rabbit_exchange:route does:
    // each exchange at most once (that ends cycles), and an exchange whose own bindings
    // match nothing hands the message to its alternate exchange, if that exists.
    thread_local std::vector<std::uint32_t> seen;
    thread_local std::vector<std::uint32_t> pending;
    seen.assign(1, exchange.index);
    pending.assign(1, exchange.index);
    auto visit_once = [](std::uint32_t index) {
        if (std::find(seen.begin(), seen.end(), index) != seen.end()) return;
        seen.push_back(index);
        pending.push_back(index);
    };
    while (!pending.empty()) {
        const exchange_node<Policy>& x = *exchanges.slot(pending.back());
        pending.pop_back();
        const std::size_t before = found.size();
        x.impl->route(view, found);
        if (found.size() == before) {
            if (!x.alternate.empty()) {
                if (const exchange_node<Policy>* alternate = exchanges.find(x.alternate)) visit_once(alternate->index);
            }
            continue;
        }
        for (std::size_t i = before; i < found.size(); ++i) {
            const destination d = found[i];
            if (d.type() == destination::kind::queue) out.push_back(d);
            else visit_once(d.index());
        }
    }
    one_copy_per_queue(out);
}

} // namespace warren::detail
