#pragma once
/// @file stats.hpp
/// Counters of queues, exchanges and the broker: where every message went; and how the
/// topic routing cache did.

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace warren {

/// Why a queue let go of a message other than by delivering it.
enum class death_reason : std::uint8_t {
    rejected, ///< rejected or nacked without requeue
    expired,  ///< its TTL passed while it waited
    maxlen,   ///< the queue was over its length limit (drop-head, reject-publish-dlx)
};

/// The reason as RabbitMQ writes it in x-death.
[[nodiscard]] constexpr std::string_view to_string(death_reason reason) noexcept {
    switch (reason) {
    case death_reason::rejected: return "rejected";
    case death_reason::expired: return "expired";
    case death_reason::maxlen: return "maxlen";
    }
    return "unknown";
}

/// Messages counted by why a queue let go of them.
struct death_counts {
    std::uint64_t expired = 0;  ///< their TTL passed
    std::uint64_t maxlen = 0;   ///< the queue was over its length limit
    std::uint64_t rejected = 0; ///< rejected or nacked without requeue
    [[nodiscard]] std::uint64_t total() const noexcept { return expired + maxlen + rejected; }
    friend bool operator==(const death_counts&, const death_counts&) = default;
};

/// Counters of one queue. Read them with basic_broker::queue_stats().
///
/// Every message a queue accepted is accounted for by exactly one of acked,
/// dead_lettered, dropped, purged, ready and unacked, so at any time
/// `enqueued == acked + dead_lettered.total() + dropped.total() + purged + ready + unacked`
/// (accounted() checks it).
struct queue_counters {
    std::uint64_t enqueued = 0;    ///< messages the queue accepted
    std::uint64_t refused = 0;     ///< refused at its length limit (reject-publish, reject-publish-dlx); never accepted
    std::uint64_t delivered = 0;   ///< handed to a consumer or a get, redeliveries included
    std::uint64_t redelivered = 0; ///< of those, deliveries of a requeued message
    std::uint64_t acked = 0;       ///< acknowledged (automatic deliveries count on delivery)
    std::uint64_t requeued = 0;    ///< returned to the queue by nack, reject or a consumer's end
    death_counts dead_lettered;    ///< handed to the dead-letter exchange, by reason
    death_counts dropped;          ///< dropped by reason, for want of a dead-letter exchange
    std::uint64_t purged = 0;      ///< removed by purge_queue
    std::size_t ready = 0;         ///< waiting to be delivered
    std::size_t unacked = 0;       ///< delivered, not yet settled
    /// Of the deliveries, those handed to a consumer as they arrived whose callback has not
    /// run yet (it runs at the next dispatch); already counted in acked or unacked.
    std::size_t awaiting_callback = 0;
    std::size_t ready_bytes = 0;   ///< body bytes of the ready messages (what x-max-length-bytes limits)
    std::size_t consumers = 0;     ///< current consumers

    /// Whether every accepted message is accounted for.
    [[nodiscard]] bool accounted() const noexcept {
        return enqueued == acked + dead_lettered.total() + dropped.total() + purged + ready + unacked;
    }
};

/// Counters of one exchange. Read them with basic_broker::exchange_stats().
struct exchange_counters {
    std::uint64_t published = 0;  ///< messages published to it (dead letters sent to it included)
    std::uint64_t routed = 0;     ///< of those, routed to at least one queue
    std::uint64_t unroutable = 0; ///< of those, routed to no queue
    std::uint64_t returned = 0;   ///< unroutable mandatory messages handed to the return handler
    std::uint64_t nacked = 0;     ///< publishes refused by at least one queue (their confirm is a nack)
};

/// Dead letters that found no way on. Read them with basic_broker::stats().
struct broker_counters {
    std::uint64_t dead_letters_without_exchange = 0; ///< their dead-letter exchange did not exist
    std::uint64_t dead_letter_cycles = 0;            ///< deliveries dropped to end an automatic dead-letter cycle
};

/// How a topic_matcher's routing cache has done since it was last sized: see
/// topic_matcher::set_cache_capacity.
struct topic_cache_stats {
    std::uint64_t lookups = 0;  ///< routes that looked in the cache
    std::uint64_t hits = 0;     ///< routes answered from it
    std::uint64_t admitted = 0; ///< keys stored, each having missed twice
    std::uint64_t bypassed = 0; ///< routes that went past the cache while its hit rate was low
    /// Hits per route that reached the matcher (lookups and bypassed ones); 0 before any.
    [[nodiscard]] double hit_rate() const noexcept {
        const std::uint64_t routes = lookups + bypassed;
        return routes == 0 ? 0.0 : static_cast<double>(hits) / static_cast<double>(routes);
    }
    topic_cache_stats& operator+=(const topic_cache_stats& o) noexcept {
        lookups += o.lookups;
        hits += o.hits;
        admitted += o.admitted;
        bypassed += o.bypassed;
        return *this;
    }
};

} // namespace warren
