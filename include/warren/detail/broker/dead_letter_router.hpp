#pragma once
/// @file detail/broker/dead_letter_router.hpp
/// dead_letter_router: pushes messages into the queues routed to, and routes what those
/// queues let go of through their dead-letter exchanges.

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <shared_mutex>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "../../clock.hpp"
#include "../../publisher.hpp"
#include "../../queue.hpp"
#include "../../queue_arguments.hpp"
#include "../../stats.hpp"
#include "../core/deferred_release.hpp"
#include "../core/ref_ptr.hpp"
#include "../message/x_death.hpp"
#include "exchange_table.hpp"
#include "queue_table.hpp"
#include "route_through_gate.hpp"
#include "router.hpp"
#include "synchronous_handoffs.hpp"

namespace warren::detail {

template <class Message, class Policy>
class dispatcher;

/// What the broker's queues need from it: a place to push messages (the publish path and
/// dead letters alike) and a router for the messages they let go of (expired, over their
/// length limit, rejected), which it republishes as RabbitMQ's rabbit_dead_letter does:
/// x-death recorded, the dead-letter routing key applied, the expiration removed.
///
/// It owns the broker-wide dead-letter counters; the tables it reads belong to the broker,
/// under the topology lock. Thread safety: route_from() takes the lock (shared); the other
/// members run with it held.
template <class Message, class Policy>
class dead_letter_router {
public:
    using queue_type = basic_queue<Message, Policy>;
    using node_type = message_node<Message, Policy>;
    using dead_letters = typename queue_type::dead_letters;
    using queues = queue_table<queue_type, Policy>;
    /// Where a push notes the queues that handed a message to a synchronous consumer.
    using synchronous = synchronous_handoffs<queue_type, dispatcher<Message, Policy>>;

    /// A dead letter and the queue it comes from, waiting to be routed.
    struct job {
        ref_ptr<queue_type> from;
        ref_ptr<node_type> message;
        death_reason reason;
        std::uint32_t hops = 0; // dead letters this one descends from in the same operation
    };
    using jobs = std::vector<job>;

    /// How many times in a row one operation's dead letters may cause further dead letters
    /// (a queue refusing one at its limit, or dropping its head for it). RabbitMQ bounces a
    /// rejected message between full reject-publish-dlx queues in the background until one
    /// has room; warren routes synchronously, so it ends such a chain here and counts the
    /// message in broker_counters::dead_letter_cycles.
    static constexpr std::uint32_t max_hops = 64;

    dead_letter_router(const clock& time, typename Policy::shared_mutex& topology, const exchange_table<Policy>& exchanges,
                       const queues& queue_slots) noexcept
        : clock_(&time), topology_(&topology), exchanges_(&exchanges), queues_(&queue_slots) {}

    /// Pushes `node` into the queues in `targets`, counting in `outcome`; the dead letters
    /// this causes join `work`. `cycle_check`, for a dead letter, is its headers: a queue
    /// its x-death shows it died in without a rejection is skipped, as in RabbitMQ.
    void push(const ref_ptr<node_type>& node, const std::vector<destination>& targets, confirmation& outcome, jobs& work,
              const field_table* cycle_check = nullptr, std::uint32_t hops = 0) {
        thread_local dead_letters dead;
        const bool synchronous_now = synchronous::taking(); // no user code runs in the loop
        for (const destination d : targets) {
            const ref_ptr<queue_type>& queue = queues_->slot(d.index());
            if (cycle_check != nullptr && is_dead_letter_cycle(*cycle_check, queue->name())) {
                cycles_.fetch_add(1, std::memory_order_relaxed);
                continue;
            }
            dead.clear();
            if (count_push(queue->push(node, dead, synchronous_now), outcome)) synchronous::handed(queue);
            for (auto& letter : dead) work.push_back(job{queue, std::move(letter.message), letter.reason, hops});
        }
    }

    /// Counts what one queue's push came to in `outcome`; true when the queue handed the
    /// message to a synchronous consumer (its callback is then to run in the publish).
    static bool count_push(typename queue_type::push_result result, confirmation& outcome) noexcept {
        switch (result) {
        case queue_type::push_result::accepted: ++outcome.routed; return false;
        case queue_type::push_result::handed_synchronous: ++outcome.routed; return true;
        case queue_type::push_result::refused: ++outcome.refused; return false;
        case queue_type::push_result::closed: return false;
        }
        return false;
    }

    /// Pushes `count` nodes into the queues in `targets`, each queue taking all of them in
    /// order under one lock, counting each message's outcome in `outcomes[i]`; the dead
    /// letters this causes join `work`, queue by queue.
    void push_many(const ref_ptr<node_type>* nodes, std::size_t count, const std::vector<destination>& targets,
                   confirmation* outcomes, jobs& work) {
        thread_local dead_letters dead;
        const bool synchronous_now = synchronous::taking(); // no user code runs in the loop
        for (const destination d : targets) {
            const ref_ptr<queue_type>& queue = queues_->slot(d.index());
            dead.clear();
            bool handed_synchronous = false;
            confirmation* outcome = outcomes;
            queue->push_many(nodes, count, dead, synchronous_now, [&](typename queue_type::push_result result) {
                handed_synchronous |= count_push(result, *outcome++);
            });
            if (handed_synchronous) synchronous::handed(queue);
            for (auto& letter : dead) work.push_back(job{queue, std::move(letter.message), letter.reason, 0});
        }
    }

    /// Routes the dead letters of `work` (and those they cause in turn, which join its
    /// end) through their dead-letter exchanges, in the order they died, and empties it;
    /// the references it held are deferred. Topology lock held (shared).
    void route(jobs& work) {
        if constexpr (std::is_copy_constructible_v<Message>) {
            std::vector<destination> targets;
            for (std::size_t i = 0; i < work.size(); ++i) {
                // Its references (the message, perhaps the last one, and its queue) go once
                // the lock is released, however route_one ends.
                struct release_later {
                    job& letter;
                    ~release_later() {
                        deferred_release::defer(std::move(letter.message));
                        deferred_release::defer(std::move(letter.from));
                    }
                };
                job letter = std::move(work[i]); // work may grow (and move) below
                const release_later keep_until_unlocked{letter};
                route_one(letter, targets, work);
            }
        }
        // (Without a copy there is nothing to route: declare_queue refuses dead-letter
        // exchanges for move-only messages.)
        work.clear();
    }

    /// Routes what `from` let go of, taking the topology lock. The caller holds a
    /// deferred_release::scope; `letters` is emptied.
    void route_from(queue_type& from, dead_letters& letters) {
        if (!letters.empty()) route_letters(from, letters); // the common case, none, inline
    }

    /// Runs `op(dead)`, an operation of `queue` that appends what it lets go of to `dead`,
    /// routes those dead letters, and returns what `op` returned; the references dropped
    /// on the way go once this returns (it holds a deferred_release::scope). For results
    /// that are cheap to move: a delivery returned through here is moved once more.
    template <class Op>
    decltype(auto) route_after(queue_type& queue, Op&& op) {
        const deferred_release::scope releases_after_unlock;
        dead_letters dead;
        if constexpr (std::is_void_v<std::invoke_result_t<Op&, dead_letters&>>) {
            op(dead);
            route_from(queue, dead);
        } else {
            auto result = op(dead);
            route_from(queue, dead);
            return result;
        }
    }

    /// Dead letters whose queue names a dead-letter exchange that does not exist.
    [[nodiscard]] std::uint64_t without_exchange() const noexcept { return without_exchange_.load(std::memory_order_relaxed); }
    /// Dead letters dropped for a cycle, or at max_hops.
    [[nodiscard]] std::uint64_t cycles() const noexcept { return cycles_.load(std::memory_order_relaxed); }

private:
    void route_letters(queue_type& from, dead_letters& letters) {
        jobs work;
        work.reserve(letters.size());
        for (auto& letter : letters) work.push_back(job{ref_ptr<queue_type>(&from), std::move(letter.message), letter.reason});
        letters.clear();
        std::shared_lock lock(*topology_);
        route(work);
    }
    void route_one(job& letter, std::vector<destination>& targets, jobs& work) {
        if (letter.hops >= max_hops) {
            cycles_.fetch_add(1, std::memory_order_relaxed);
            return;
        }
        const queue_arguments& args = letter.from->arguments();
        exchange_node<Policy>* found = exchanges_->find(*args.dead_letter_exchange);
        if (found == nullptr) {
            without_exchange_.fetch_add(1, std::memory_order_relaxed);
            return;
        }
        exchange_node<Policy>& dlx = *found;
        // rabbit_dead_letter:make_msg: x-death, the dead-letter routing key, no expiration.
        // A new node from the original's parts: a copy of its body, its properties with the
        // x-death (so it always has some).
        const node_type& original = *letter.message;
        warren::properties props = original.properties();
        record_death(props.headers, {letter.reason, letter.from->name(), original.exchange_name(),
                                     original.routing_key(), clock_->unix_seconds(), props.expiration});
        props.expiration.reset();
        std::string_view key = original.routing_key();
        if (args.dead_letter_routing_key) {
            key = *args.dead_letter_routing_key;
            props.headers.erase("CC");
        }
        dlx.published.fetch_add(1, std::memory_order_relaxed);
        // The copy is stored before it is routed, so that whatever becomes of it (no route,
        // every queue refusing it) it is let go of after the lock: a copy of a user's body
        // is user code.
        typename node_type::body_type body = original.body;
        auto node = node_type::make(key, body, &props, dlx.shared_name);
        detail::route(*exchanges_, *queues_, dlx, routing_view{node->routing_key(), node->properties()}, targets);
        if (targets.empty()) {
            dlx.unroutable.fetch_add(1, std::memory_order_relaxed);
        } else {
            confirmation ignored;
            push(node, targets, ignored, work, &node->properties().headers, letter.hops + 1);
        }
        deferred_release::defer(std::move(node));
    }

    const clock* clock_;
    typename Policy::shared_mutex* topology_;
    const exchange_table<Policy>* exchanges_;
    const queues* queues_;
    typename Policy::template atomic<std::uint64_t> without_exchange_{0};
    typename Policy::template atomic<std::uint64_t> cycles_{0};
};

} // namespace warren::detail
