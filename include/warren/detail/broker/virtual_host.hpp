#pragma once
/// @file detail/broker/virtual_host.hpp
/// virtual_host: the exchanges, queues and bindings, as RabbitMQ's virtual host holds
/// them, and the changes that keep them consistent with one another.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "../../clock.hpp"
#include "../../options.hpp"
#include "../../queue.hpp"
#include "../../queue_arguments.hpp"
#include "../core/deferred_release.hpp"
#include "../core/generated_name.hpp"
#include "../core/ref_ptr.hpp"
#include "binding_table.hpp"
#include "declare_rules.hpp"
#include "exchange_table.hpp"
#include "queue_table.hpp"

namespace warren::detail {

template <class Message, class Policy>
class dead_letter_router;

/// The three tables (exchange_table, queue_table, binding_table) and every change that
/// touches more than one of them: declaring with RabbitMQ's rules (declare_rules), and
/// deleting with its cascades (a queue or exchange takes its bindings along; an
/// auto-delete exchange that loses its last binding goes too).
///
/// Not thread-safe: the broker's topology lock guards it, unique for the changes and
/// shared for the lookups. What the changes let go of is deferred (the caller holds a
/// deferred_release::scope), since exchange types, queues and their messages hold user code.
template <class Message, class Policy>
class virtual_host {
public:
    using queue_type = basic_queue<Message, Policy>;
    using queues = queue_table<queue_type, Policy>;
    using node = exchange_node<Policy>;

    /// Queues it makes take time from `time` and send dead letters to `router`.
    virtual_host(const clock& time, dead_letter_router<Message, Policy>* router, std::uint64_t name_seed) noexcept
        : clock_(&time), router_(router), name_seed_(name_seed) {}

    [[nodiscard]] exchange_table<Policy>& exchanges() noexcept { return exchanges_; }
    [[nodiscard]] const exchange_table<Policy>& exchanges() const noexcept { return exchanges_; }
    [[nodiscard]] const queues& queue_slots() const noexcept { return queues_; }
    [[nodiscard]] const binding_table<Policy>& bindings() const noexcept { return bindings_; }
    /// Changes with every declare, delete, bind and unbind that takes effect, so a route
    /// remembered under one version holds while it lasts. Topology lock held (shared).
    [[nodiscard]] std::uint64_t version() const noexcept { return version_; }
    /// Whether a queue with x-message-ttl or x-expires exists (dispatch then applies time).
    [[nodiscard]] bool has_timed_queues() const noexcept { return timed_queues_.load(std::memory_order_relaxed) > 0; }

    /// Adds the exchanges RabbitMQ predeclares: the default one ("", direct, routing by
    /// queue name) and amq.direct, amq.fanout, amq.topic, amq.headers and amq.match.
    void add_predeclared_exchanges(std::size_t cache_capacity) {
        exchange_options durable;
        durable.durable = true;
        (void)exchanges_.add("", "direct", durable, 0);
        for (const auto& [name, type] : {std::pair{"amq.direct", "direct"}, std::pair{"amq.fanout", "fanout"},
                                         std::pair{"amq.topic", "topic"}, std::pair{"amq.headers", "headers"},
                                         std::pair{"amq.match", "headers"}}) {
            (void)exchanges_.add(name, type, durable, cache_capacity);
        }
    }
    /// As the broker goes away: closes every queue (their consumers end, with no
    /// basic.cancel) and marks every exchange deleted, so subscriptions, deliveries and
    /// publishers that outlive the broker stay harmless. Waits for dead letters being
    /// routed on other threads. Returns the ended consumers, to let go of after the lock.
    [[nodiscard]] std::vector<typename queue_type::ended_consumers> close_all() {
        std::vector<typename queue_type::ended_consumers> ended;
        for (const auto& queue : queues_.list().queues) {
            if (!queue) continue; // deleted
            ended.push_back(queue->close());
            queue->detach_router();
        }
        exchanges_.for_each([](node& x) { x.deleted = true; });
        return ended;
    }

    /// declare_exchange: the type checked first (command_invalid, 503), then the name; an
    /// existing exchange must be equivalent (406); a new one must not be reserved (403).
    void declare_exchange(std::string_view name, std::string_view type, const exchange_options& options,
                          std::size_t cache_capacity) {
        if (!exchanges_.has_type(type)) raise(reply_code::command_invalid, "unknown exchange type " + detail::quoted(type));
        check_not_default_exchange(name);
        if (const node* existing = exchanges_.find(name)) {
            check_exchange_equivalent(name, type, options, existing->type, existing->options);
            return;
        }
        check_not_reserved(name, "exchange");
        check_new_exchange_options(name, options);
        (void)exchanges_.add(name, type, options, cache_capacity);
        ++version_;
    }
    /// delete_exchange: a missing one is nothing; with `if_unused`, one with bindings is 406.
    void delete_exchange(std::string_view name, bool if_unused) {
        node* exchange = exchanges_.find(name);
        if (exchange == nullptr) return;
        if (if_unused && exchange->binding_count > 0) {
            raise(reply_code::precondition_failed, "exchange " + detail::quoted(name) + " in use");
        }
        delete_exchange(*exchange);
    }

    /// declare_queue: the arguments parsed (queue_arguments::parse); an existing queue must
    /// be equivalent (406) and counts as used (x-expires); an empty name gets a generated
    /// one. Returns the name.
    std::string declare_queue(std::string_view name, const queue_options& options) {
        const queue_arguments parsed = queue_arguments::parse(options.arguments, name);
        if constexpr (!std::is_copy_constructible_v<Message>) {
            // A dead letter is a changed copy of the message (new headers and key).
            if (parsed.dead_letter_exchange) {
                raise(reply_code::not_implemented,
                      "x-dead-letter-exchange needs a copyable message type (queue " + detail::quoted(name) + ")");
            }
        }
        if (!name.empty()) {
            if (const auto index = queues_.find(name)) {
                queue_type& existing = *queues_.slot(*index);
                check_queue_equivalent(name, options, existing.options());
                existing.touch(); // a redeclare is a use, for x-expires
                return std::string(name);
            }
            check_not_reserved(name, "queue");
        }
        std::string actual(name);
        while (actual.empty() || queues_.contains(actual)) actual = generated_name("amq.gen-", name_seed_, 2 * ++name_counter_);
        (void)queues_.add(make_ref<queue_type>(actual, options, *clock_, router_));
        ++version_; // the default exchange routes to it now
        if (parsed.message_ttl || parsed.expires) timed_queues_.fetch_add(1, std::memory_order_relaxed);
        return actual;
    }
    /// Adds a queue named `name`, which the caller made unique and which may be reserved,
    /// with no arguments: the private queue behind a direct reply-to consumer (the default
    /// exchange routes to it by that name). Returns it.
    ref_ptr<queue_type> add_private_queue(const std::string& name, const queue_options& options) {
        auto queue = make_ref<queue_type>(name, options, *clock_, router_);
        (void)queues_.add(queue);
        ++version_; // the default exchange routes to it now
        return queue;
    }
    /// The serial-`serial` address of a direct reply-to consumer:
    /// amq.rabbitmq.reply-to.<22 characters>, which no queue a user declares can take.
    [[nodiscard]] std::string reply_address(std::uint64_t serial) const {
        return generated_name("amq.rabbitmq.reply-to.", ~name_seed_, serial);
    }
    /// A consumer tag like RabbitMQ's amq.ctag-<22 characters>, unique by the consumer's id.
    /// (The odd serials are the tags', so a tag never repeats a queue name.)
    [[nodiscard]] std::string consumer_tag(std::uint64_t consumer_id) const {
        return generated_name("amq.ctag-", name_seed_, 2 * consumer_id + 1);
    }
    /// The queue named `name`; not_found (404) if there is none.
    [[nodiscard]] ref_ptr<queue_type> find_queue(std::string_view name) const { return queues_.slot(queues_.index_of(name)); }
    /// The queue named `name`, or empty.
    [[nodiscard]] ref_ptr<queue_type> queue_or_null(std::string_view name) const {
        const auto index = queues_.find(name);
        return index ? queues_.slot(*index) : ref_ptr<queue_type>();
    }

    /// A queue delete_queue closed: its name, the consumers it ended and the ready messages
    /// it dropped.
    struct closed_queue {
        std::string name;
        typename queue_type::ended_consumers ended;
        std::size_t dropped = 0;
    };
    /// delete_queue: closes and removes the queue named `name` (nothing if there is none),
    /// refusing (406) one in use with `if_unused` or not empty with `if_empty`. `cursor` is
    /// the dispatcher's, moved if the queue list is compacted.
    std::optional<closed_queue> delete_queue(std::string_view name, const queue_delete_options& options, std::size_t& cursor) {
        const auto index = queues_.find(name);
        if (!index) return std::nullopt;
        queue_type& queue = *queues_.slot(*index);
        if (options.if_unused && queue.consumer_count() > 0) {
            raise(reply_code::precondition_failed, "queue " + detail::quoted(name) + " in use");
        }
        if (options.if_empty && queue.message_count() > 0) {
            raise(reply_code::precondition_failed, "queue " + detail::quoted(name) + " not empty");
        }
        // Counted as the queue closes: consumers and gets on other threads take messages
        // without the topology lock until then.
        closed_queue out{queue.name(), {}, 0};
        out.ended = queue.close(&out.dropped);
        remove_queue(*index, cursor);
        return out;
    }
    /// Deletes `queue` if it is still here and has no consumer (auto-delete; with a time,
    /// x-expires passed by then): the check and the closing are one step, so a consumer
    /// that subscribed meanwhile keeps it and none is ever cancelled here.
    void delete_if_unused(queue_type& queue, std::size_t& cursor, clock::time_point unused_since_before = clock::time_point::max()) {
        const auto index = queues_.slot_of(queue);
        if (index && queue.close_if_unused(unused_since_before)) remove_queue(*index, cursor);
    }

    /// x-expires: deletes the queues of `list` unused for longer than theirs at `now`.
    void delete_unused_queues(const typename queues::walk_list& list, clock::time_point now, std::size_t& cursor) {
        for (const auto& queue : list.queues) {
            if (queue) delete_if_unused(*queue, cursor, now);
        }
    }

    /// Binds (`add`) or unbinds `target` to exchange `source`; an auto-delete exchange
    /// that loses its last binding is deleted.
    void change_binding(bool add, node& source, destination target, std::string_view key, const field_table& arguments) {
        ++version_;
        if (add) bindings_.add(target, source, key, arguments);
        else if (bindings_.remove(target, source, key, arguments)) delete_exchange(source);
    }

private:
    void delete_exchange(node& exchange) {
        ++version_;
        bindings_.remove_from(exchange);
        const auto unused = bindings_.remove_to(destination(destination::kind::exchange, exchange.index));
        // Publishers may keep the node alive, marked deleted; else it goes once the lock
        // is released, with its exchange type (user code).
        deferred_release::defer(exchanges_.remove(exchange));
        delete_unused(unused);
    }
    void delete_unused(const std::vector<node*>& unused) {
        for (node* x : unused) {
            if (x->unused_auto_delete()) delete_exchange(*x); // not deleted meanwhile
        }
    }
    /// Removes a closed queue from the tables; its reference is deferred.
    void remove_queue(std::uint32_t index, std::size_t& cursor) {
        ++version_;
        const queue_arguments& args = queues_.slot(index)->arguments();
        if (args.message_ttl || args.expires) timed_queues_.fetch_sub(1, std::memory_order_relaxed);
        const auto unused = bindings_.remove_to(destination(destination::kind::queue, index));
        deferred_release::defer(queues_.remove(index, cursor));
        delete_unused(unused);
    }

    const clock* clock_;
    dead_letter_router<Message, Policy>* router_;
    exchange_table<Policy> exchanges_;
    queues queues_;
    binding_table<Policy> bindings_{exchanges_};
    typename Policy::template atomic<std::size_t> timed_queues_{0}; // with x-message-ttl or x-expires
    std::uint64_t version_ = 1; // changed under the unique lock, read under the shared one
    const std::uint64_t name_seed_;
    std::uint64_t name_counter_ = 0;
};

} // namespace warren::detail
