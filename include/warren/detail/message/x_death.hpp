#pragma once
/// @file detail/message/x_death.hpp
/// The x-death header and dead-letter cycle detection, as RabbitMQ's rabbit_dead_letter has them.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "../../field_table.hpp"
#include "../../stats.hpp"
#include "../core/saturate.hpp"

namespace warren {

namespace detail {

/// What one dead-lettering adds to a message's history.
struct death_event {
    death_reason reason;
    std::string_view queue;
    std::string_view exchange;    ///< the exchange the message was last published to
    std::string_view routing_key; ///< its routing key there
    std::int64_t time;            ///< unix seconds
    std::optional<std::string> original_expiration; ///< its expiration property, if it had one
};

/// Adds `event` to `headers` as rabbit_dead_letter:update_x_death_header does: the first
/// death also sets x-first-death-{reason,queue,exchange}; a death for a (queue, reason)
/// already listed increments that entry's count and moves it to the front (keeping its
/// first time, exchange and keys); a new one is prepended with count 1. Counts saturate at
/// the ends of std::int64_t.
inline void record_death(field_table& headers, const death_event& event) {
    field_table entry{{"reason", std::string(to_string(event.reason))},
                      {"queue", std::string(event.queue)},
                      {"time", event.time},
                      {"exchange", std::string(event.exchange)},
                      {"routing-keys", field_array{field_value(std::string(event.routing_key))}},
                      {"count", std::int64_t{1}}};
    if (event.original_expiration) entry.set("original-expiration", *event.original_expiration);

    const field_value* existing = headers.find("x-death");
    const field_array* deaths = existing == nullptr ? nullptr : existing->get_if<field_array>();
    if (deaths == nullptr) {
        // An x-death that is not an array (a client rewrote it) is only reset: RabbitMQ
        // writes the first-death headers when there was no x-death at all.
        if (existing == nullptr) {
            headers.set("x-first-death-reason", std::string(to_string(event.reason)));
            headers.set("x-first-death-queue", std::string(event.queue));
            headers.set("x-first-death-exchange", std::string(event.exchange));
        }
        headers.set("x-death", field_array{field_value(std::move(entry))});
        return;
    }
    // Entries of the same queue and reason are merged (older RabbitMQs wrote several).
    // RabbitMQ 3.10 groups them with a fold that prepends, so the earlier entries come out
    // reversed whenever there are two or more; warren keeps that order, since cycle
    // detection reads it (after deaths in q1, q2, q3 the header lists q3, q1, q2).
    field_array updated;
    updated.reserve(deaths->size() + 1);
    updated.emplace_back(); // the front slot, filled below
    std::optional<field_table> merged;
    const bool reversed = deaths->size() >= 2;
    for (std::size_t k = 0; k < deaths->size(); ++k) {
        const field_value& item = (*deaths)[reversed ? deaths->size() - 1 - k : k];
        const field_table* death = item.get_if<field_table>();
        const std::string* queue = death == nullptr ? nullptr : death->find_string("queue");
        const std::string* reason = death == nullptr ? nullptr : death->find_string("reason");
        if (queue != nullptr && reason != nullptr && *queue == event.queue && *reason == to_string(event.reason)) {
            const field_value* count = death->find("count");
            const std::int64_t* n = count == nullptr ? nullptr : count->get_if<std::int64_t>();
            if (!merged) {
                merged = *death;
                merged->set("count", n == nullptr ? std::int64_t{1} : *n);
            } else {
                // Counts come from the message, which a client may have written: they
                // saturate rather than overflow.
                const std::int64_t* sum = merged->find("count")->get_if<std::int64_t>();
                merged->set("count", saturating_add(*sum, n == nullptr ? std::int64_t{1} : *n));
            }
            continue;
        }
        updated.push_back(item);
    }
    if (merged) {
        const std::int64_t count = *merged->find("count")->get_if<std::int64_t>();
        merged->set("count", saturating_add(count, std::int64_t{1}));
        updated.front() = field_value(std::move(*merged));
    } else {
        updated.front() = field_value(std::move(entry));
    }
    headers.set("x-death", std::move(updated));
}

/// Whether dead-lettering a message with these (already updated) headers into `queue`
/// would close a fully automatic cycle, which RabbitMQ drops (rabbit_dead_letter:is_cycle):
/// `queue` appears in x-death, and no death from the front up to and including its first
/// entry was a rejection (a client took part) or something that is not a table.
inline bool is_dead_letter_cycle(const field_table& headers, std::string_view queue) {
    const field_value* existing = headers.find("x-death");
    const field_array* deaths = existing == nullptr ? nullptr : existing->get_if<field_array>();
    if (deaths == nullptr) return false;
    for (const field_value& item : *deaths) {
        const field_table* death = item.get_if<field_table>();
        if (death == nullptr) return false;
        const std::string* reason = death->find_string("reason");
        if (reason != nullptr && *reason == "rejected") return false;
        const std::string* name = death->find_string("queue");
        if (name != nullptr && *name == queue) return true;
    }
    return false;
}

} // namespace detail
} // namespace warren
