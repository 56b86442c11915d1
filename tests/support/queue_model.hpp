// A model of RabbitMQ 3.10's classic queues, written independently of queue.hpp, for the
// counters test (tests/stats.cpp) to compare the broker with under a random workload:
// length limits with every x-overflow mode, TTLs, priorities, single active consumer,
// dead-letter exchanges, consumers with prefetch, gets, acks, nacks, rejects and purges,
// and delivery on arrival (a message for an empty queue goes straight to a consumer with
// credit, rabbit_amqqueue_process:deliver_or_enqueue).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace warren_test::queue_model {

/// Milliseconds since the workload started.
using ms = std::int64_t;
inline constexpr ms never = std::numeric_limits<ms>::max();
inline constexpr std::size_t no_index = static_cast<std::size_t>(-1);

// RabbitMQ 3.10 classic queues as the documentation and rabbit_amqqueue_process describe
// them.

struct m_entry {
    std::string body;
    std::string key;
    std::optional<std::uint8_t> priority;
    std::optional<ms> message_ttl; // the expiration property; dead letters lose it
    std::string death_reason;      // x-first-death-reason, "" if it never died
    std::string death_queue;       // x-first-death-queue
    std::uint64_t sequence = 0;    // arrival order in its queue
    ms expires = never;
    bool redelivered = false;
    std::size_t level = 0;
};

struct m_consumer {
    std::uint64_t id = 0; // subscription order
    std::string tag;
    bool manual = false;
    std::uint16_t prefetch = 0;
    std::int32_t priority = 0;
    std::uint32_t unacked = 0;
    bool blocked = false;
};

struct m_unacked {
    std::uint64_t tag;
    std::uint64_t owner; // consumer id, 0 for a get
    m_entry entry;
};

struct m_config {
    std::optional<std::uint64_t> max_length;
    std::optional<std::uint64_t> max_bytes;
    warren::overflow_mode overflow = warren::overflow_mode::drop_head;
    std::optional<ms> ttl;
    std::string dlx; // "" none, "dlx" (a fanout to the dead queue) or "missing"
    std::optional<std::string> dl_key;
    std::optional<std::uint8_t> max_priority;
    bool single_active = false;

    [[nodiscard]] warren::queue_options options() const {
        warren::queue_options o;
        if (max_length) o.arguments.set("x-max-length", static_cast<std::int64_t>(*max_length));
        if (max_bytes) o.arguments.set("x-max-length-bytes", static_cast<std::int64_t>(*max_bytes));
        switch (overflow) {
        case warren::overflow_mode::drop_head:
            break; // the default, left implicit
        case warren::overflow_mode::reject_publish: o.arguments.set("x-overflow", "reject-publish"); break;
        case warren::overflow_mode::reject_publish_dlx: o.arguments.set("x-overflow", "reject-publish-dlx"); break;
        }
        if (ttl) o.arguments.set("x-message-ttl", *ttl);
        if (!dlx.empty()) o.arguments.set("x-dead-letter-exchange", dlx);
        if (dl_key) o.arguments.set("x-dead-letter-routing-key", *dl_key);
        if (max_priority) o.arguments.set("x-max-priority", static_cast<std::int64_t>(*max_priority));
        if (single_active) o.arguments.set("x-single-active-consumer", true);
        return o;
    }
    [[nodiscard]] std::string describe() const {
        std::ostringstream out;
        if (max_length) out << " max-length=" << *max_length;
        if (max_bytes) out << " max-length-bytes=" << *max_bytes;
        if (overflow == warren::overflow_mode::reject_publish) out << " reject-publish";
        if (overflow == warren::overflow_mode::reject_publish_dlx) out << " reject-publish-dlx";
        if (ttl) out << " ttl=" << *ttl;
        if (!dlx.empty()) out << " dlx=" << dlx;
        if (dl_key) out << " dl-key=" << *dl_key;
        if (max_priority) out << " max-priority=" << int{*max_priority};
        if (single_active) out << " sac";
        return out.str();
    }
};

/// One delivery, as a line to compare: "queue/consumer body #tag [*] key=... death=...".
struct m_delivery {
    std::string queue;
    std::string consumer;
    std::string body;
    std::uint64_t tag;
    bool redelivered;
    std::string key;
    std::string death;
    [[nodiscard]] std::string line() const {
        return queue + "/" + consumer + " " + body + " #" + std::to_string(tag) + (redelivered ? " *" : "") +
               " key=" + key + (death.empty() ? "" : " death=" + death);
    }
};

/// A message handed to a consumer as it arrived, whose callback has not run yet.
struct m_handed {
    std::uint64_t owner;
    bool manual;
    m_entry entry; // to put back, as it was, if an automatic consumer ends first
    m_delivery delivery;
};

struct m_queue {
    std::string name;
    m_config config;
    std::vector<std::deque<m_entry>> levels;
    std::uint64_t next_sequence = 0;
    std::uint64_t last_tag = 0;
    std::size_t ready = 0;
    std::size_t ready_bytes = 0;
    std::vector<m_unacked> unacked; // by tag
    std::vector<m_consumer> consumers; // the rotation, front first
    std::deque<m_handed> handed;       // in arrival order
    warren::queue_counters counters;
};

struct m_exchange {
    std::uint64_t published = 0;
    std::uint64_t unroutable = 0;
    std::uint64_t returned = 0;
    std::uint64_t nacked = 0;
};

class model {
public:
    std::vector<m_queue> queues; // declaration order
    std::size_t dead = 0;        // the queue the dlx exchange feeds
    std::vector<std::size_t> fanout_targets;
    std::map<std::string, std::set<std::size_t>> direct_bindings;
    std::map<std::string, m_exchange> exchanges{{"", {}}, {"fan", {}}, {"dir", {}}, {"dlx", {}}};
    std::uint64_t without_exchange = 0;
    ms now = 0;
    bool expiring_published = false;
    std::size_t cursor = 0;
    std::uint64_t next_consumer = 0;

    std::size_t add_queue(std::string name, m_config config) {
        m_queue q;
        q.name = std::move(name);
        q.levels.resize(std::size_t{config.max_priority.value_or(0)} + 1);
        q.config = std::move(config);
        queues.push_back(std::move(q));
        return queues.size() - 1;
    }

    // -- publishing --

    warren::confirmation publish(const std::string& exchange, m_entry msg, bool mandatory) {
        m_exchange& x = exchanges[exchange];
        ++x.published;
        if (msg.message_ttl) expiring_published = true;
        const std::vector<std::size_t> targets = route(exchange, msg.key);
        warren::confirmation c;
        if (targets.empty()) {
            ++x.unroutable;
            if (mandatory) {
                ++x.returned;
                c.returned = true;
            }
            return c;
        }
        for (std::size_t t : targets) {
            if (push(t, msg)) ++c.routed;
            else ++c.refused;
        }
        if (c.refused > 0) {
            c.ack = false;
            ++x.nacked;
        }
        route_letters();
        return c;
    }

    std::optional<m_delivery> try_get(std::size_t q, bool manual) {
        m_queue& queue = queues[q];
        expire_heads(q);
        std::optional<m_delivery> d;
        if (queue.ready > 0) {
            d = hand_out(q, take_head(q), 0, manual, "");
            expire_heads(q); // RabbitMQ checks the new head right after a get
        }
        route_letters();
        return d;
    }

    std::uint64_t subscribe(std::size_t q, std::string tag, bool manual, std::uint16_t prefetch,
                            std::int32_t priority) {
        m_consumer c;
        c.id = ++next_consumer;
        c.tag = std::move(tag);
        c.manual = manual;
        c.prefetch = prefetch;
        c.priority = priority;
        queues[q].consumers.push_back(c);
        return c.id;
    }

    void cancel(std::size_t q, std::uint64_t id) {
        m_queue& queue = queues[q];
        // What was handed to it and not yet seen: automatic ones go back as they were,
        // manual ones are unacked and go back with the rest.
        for (auto it = queue.handed.begin(); it != queue.handed.end();) {
            if (it->owner != id) {
                ++it;
                continue;
            }
            if (!it->manual) {
                --queue.counters.delivered;
                --queue.counters.acked;
                put_back(q, std::move(it->entry));
            }
            it = queue.handed.erase(it);
        }
        std::vector<std::uint64_t> tags;
        for (const auto& u : queue.unacked) {
            if (u.owner == id) tags.push_back(u.tag);
        }
        for (std::uint64_t tag : tags) release(q, tag, false, true);
        drop_head_while_over_limit(q);
        queue.consumers.erase(std::find_if(queue.consumers.begin(), queue.consumers.end(),
                                           [&](const m_consumer& c) { return c.id == id; }));
        route_letters();
    }

    void settle(std::size_t q, std::uint64_t tag, bool multiple, bool ack, bool requeue) {
        m_queue& queue = queues[q];
        const std::uint64_t owner = find_unacked(queue, tag)->owner;
        if (multiple) {
            std::vector<std::uint64_t> earlier;
            for (const auto& u : queue.unacked) {
                if (u.owner == owner && u.tag < tag) earlier.push_back(u.tag);
            }
            for (std::uint64_t t : earlier) release(q, t, ack, requeue);
        }
        release(q, tag, ack, requeue);
        if (requeue) {
            drop_head_while_over_limit(q);
            expire_heads(q);
        }
        route_letters();
    }

    /// Expired heads go first: RabbitMQ's TTL timer would have removed them already.
    std::size_t purge(std::size_t q) {
        expire(q);
        m_queue& queue = queues[q];
        const std::size_t n = queue.ready;
        for (auto& level : queue.levels) level.clear();
        queue.counters.purged += n;
        queue.ready = 0;
        queue.ready_bytes = 0;
        return n;
    }

    /// What basic_broker::expire() does, also what message_count and queue_stats do for one queue.
    void expire(std::size_t q) {
        expire_heads(q);
        route_letters();
    }
    void expire_all() {
        for (std::size_t q = 0; q < queues.size(); ++q) expire(q);
    }

    std::vector<m_delivery> dispatch(std::size_t budget) {
        const bool timed =
            std::any_of(queues.begin(), queues.end(), [](const m_queue& q) { return q.config.ttl.has_value(); });
        if (timed || expiring_published) expire_all();
        std::vector<m_delivery> out;
        const std::size_t n = queues.size();
        std::size_t next = cursor % n;
        std::size_t idle = 0;
        while (out.size() < budget && idle < n) {
            const std::size_t q = next;
            next = next + 1 == n ? 0 : next + 1;
            auto d = next_callback(q);
            if (!d) {
                ++idle;
                continue;
            }
            idle = 0;
            cursor = next;
            out.push_back(std::move(*d));
        }
        return out;
    }

    [[nodiscard]] warren::queue_counters counters(std::size_t q) const {
        const m_queue& queue = queues[q];
        warren::queue_counters c = queue.counters;
        c.ready = queue.ready;
        c.unacked = queue.unacked.size();
        c.awaiting_callback = queue.handed.size();
        c.ready_bytes = queue.ready_bytes;
        c.consumers = queue.consumers.size();
        return c;
    }
    [[nodiscard]] bool has_unacked(std::size_t q, std::uint64_t tag) const {
        const auto& u = queues[q].unacked;
        return std::any_of(u.begin(), u.end(), [&](const m_unacked& x) { return x.tag == tag; });
    }

private:
    struct letter {
        std::size_t from;
        m_entry entry;
        warren::death_reason reason;
    };
    std::vector<letter> letters_;

    [[nodiscard]] std::vector<std::size_t> route(const std::string& exchange, const std::string& key) const {
        std::vector<std::size_t> out;
        if (exchange.empty()) {
            for (std::size_t q = 0; q < queues.size(); ++q) {
                if (queues[q].name == key) out.push_back(q);
            }
        } else if (exchange == "fan") {
            out = fanout_targets;
        } else if (exchange == "dir") {
            if (auto it = direct_bindings.find(key); it != direct_bindings.end()) {
                out.assign(it->second.begin(), it->second.end());
            }
        } else if (exchange == "dlx") {
            out.push_back(dead);
        }
        std::sort(out.begin(), out.end()); // the broker pushes to queues in declaration order
        return out;
    }

    static std::size_t body_bytes(const m_entry& e) { return e.body.size(); }

    [[nodiscard]] bool over_limit(const m_queue& queue) const {
        return (queue.config.max_length && queue.ready > *queue.config.max_length) ||
               (queue.config.max_bytes && queue.ready_bytes > *queue.config.max_bytes);
    }

    /// Whether the queue took the message (false: refused at its limit).
    bool push(std::size_t q, m_entry msg) {
        m_queue& queue = queues[q];
        expire_heads(q);
        const m_config& cfg = queue.config;
        if ((cfg.max_length || cfg.max_bytes) && cfg.overflow != warren::overflow_mode::drop_head) {
            const bool too_long = cfg.max_length && queue.ready + 1 > *cfg.max_length;
            const bool too_big = cfg.max_bytes && queue.ready_bytes + body_bytes(msg) > *cfg.max_bytes;
            if (too_long || too_big) {
                ++queue.counters.refused;
                if (cfg.overflow == warren::overflow_mode::reject_publish_dlx && !cfg.dlx.empty()) {
                    letters_.push_back({q, msg, warren::death_reason::maxlen});
                }
                return false;
            }
        }
        std::optional<ms> ttl = cfg.ttl;
        if (msg.message_ttl && (!ttl || *msg.message_ttl < *ttl)) ttl = msg.message_ttl;
        msg.expires = ttl ? now + *ttl : never;
        msg.sequence = queue.next_sequence++;
        msg.redelivered = false;
        msg.level = std::min<std::size_t>(msg.priority.value_or(0), queue.levels.size() - 1);
        ++queue.counters.enqueued;
        if (queue.ready == 0) {
            if (const std::size_t index = pick(queue); index != no_index) {
                m_consumer c = queue.consumers[index];
                queue.consumers.erase(queue.consumers.begin() + static_cast<std::ptrdiff_t>(index));
                m_entry kept = msg;
                m_delivery d = hand_out(q, std::move(msg), c.id, c.manual, c.tag);
                if (c.manual) ++c.unacked;
                queue.consumers.push_back(c); // the one served goes to the back
                queue.handed.push_back({c.id, c.manual, std::move(kept), std::move(d)});
                return true;
            }
        }
        queue.ready_bytes += body_bytes(msg);
        ++queue.ready;
        queue.levels[msg.level].push_back(std::move(msg));
        drop_head_while_over_limit(q);
        expire_heads(q); // and after every other change to the head
        return true;
    }

    m_entry take_from(std::size_t q, std::size_t level) {
        m_queue& queue = queues[q];
        m_entry e = std::move(queue.levels[level].front());
        queue.levels[level].pop_front();
        --queue.ready;
        queue.ready_bytes -= body_bytes(e);
        return e;
    }
    m_entry take_head(std::size_t q) {
        const auto& levels = queues[q].levels;
        for (std::size_t level = levels.size(); level-- > 0;) {
            if (!levels[level].empty()) return take_from(q, level);
        }
        INFO("take_head on an empty model queue");
        REQUIRE(false);
        return {};
    }

    void let_go(std::size_t q, m_entry e, warren::death_reason reason) {
        m_queue& queue = queues[q];
        const bool dead_lettered = !queue.config.dlx.empty();
        warren::death_counts& counts = dead_lettered ? queue.counters.dead_lettered : queue.counters.dropped;
        switch (reason) {
        case warren::death_reason::expired: ++counts.expired; break;
        case warren::death_reason::maxlen: ++counts.maxlen; break;
        case warren::death_reason::rejected: ++counts.rejected; break;
        }
        if (dead_lettered) letters_.push_back({q, std::move(e), reason});
    }

    void drop_head_while_over_limit(std::size_t q) {
        m_queue& queue = queues[q];
        if (queue.config.overflow != warren::overflow_mode::drop_head) return;
        while (queue.ready > 0 && over_limit(queue)) let_go(q, take_head(q), warren::death_reason::maxlen);
    }

    /// RabbitMQ removes expired messages only at the head: the first priority level whose
    /// head has not expired stops it (rabbit_priority_queue:dropwhile).
    void expire_heads(std::size_t q) {
        auto& levels = queues[q].levels;
        for (std::size_t level = levels.size(); level-- > 0;) {
            while (!levels[level].empty() && levels[level].front().expires <= now) {
                let_go(q, take_from(q, level), warren::death_reason::expired);
            }
            if (!levels[level].empty()) return;
        }
    }

    /// rabbit_dead_letter: republish to the dead-letter exchange, with the dead-letter
    /// routing key if set, no expiration, x-death recorded.
    void route_letters() {
        for (std::size_t i = 0; i < letters_.size(); ++i) {
            letter l = std::move(letters_[i]);
            const m_queue& from = queues[l.from];
            if (from.config.dlx == "missing") {
                ++without_exchange;
                continue;
            }
            m_entry copy = l.entry;
            if (copy.death_reason.empty()) {
                copy.death_reason = std::string(warren::to_string(l.reason));
                copy.death_queue = from.name;
            }
            if (from.config.dl_key) copy.key = *from.config.dl_key;
            copy.message_ttl.reset();
            ++exchanges["dlx"].published; // a fanout bound to the dead queue: always routed
            (void)push(dead, std::move(copy));
        }
        letters_.clear();
    }

    m_delivery hand_out(std::size_t q, m_entry e, std::uint64_t owner, bool manual, const std::string& consumer) {
        m_queue& queue = queues[q];
        const std::uint64_t tag = ++queue.last_tag;
        ++queue.counters.delivered;
        if (e.redelivered) ++queue.counters.redelivered;
        m_delivery d{queue.name, consumer, e.body, tag, e.redelivered, e.key,
                     e.death_reason.empty() ? "" : e.death_reason + "@" + e.death_queue};
        if (manual) queue.unacked.push_back({tag, owner, std::move(e)});
        else ++queue.counters.acked;
        return d;
    }

    static m_unacked* find_unacked(m_queue& queue, std::uint64_t tag) {
        for (auto& u : queue.unacked) {
            if (u.tag == tag) return &u;
        }
        INFO("settling a tag the model does not hold: " << tag);
        REQUIRE(false);
        return nullptr;
    }

    static void unblock(m_queue& queue, std::size_t index) {
        // Freed from its prefetch limit: back into the rotation, at the end.
        m_consumer c = queue.consumers[index];
        c.blocked = false;
        queue.consumers.erase(queue.consumers.begin() + static_cast<std::ptrdiff_t>(index));
        queue.consumers.push_back(c);
    }

    void release(std::size_t q, std::uint64_t tag, bool ack, bool requeue) {
        m_queue& queue = queues[q];
        auto it = std::find_if(queue.unacked.begin(), queue.unacked.end(),
                               [&](const m_unacked& u) { return u.tag == tag; });
        m_unacked u = std::move(*it);
        queue.unacked.erase(it);
        for (std::size_t i = 0; i < queue.consumers.size(); ++i) {
            if (queue.consumers[i].id != u.owner) continue;
            --queue.consumers[i].unacked;
            if (queue.consumers[i].blocked) unblock(queue, i);
            break;
        }
        if (ack) {
            ++queue.counters.acked;
        } else if (requeue) {
            ++queue.counters.requeued;
            m_entry e = std::move(u.entry);
            e.redelivered = true;
            put_back(q, std::move(e));
        } else {
            let_go(q, std::move(u.entry), warren::death_reason::rejected);
        }
    }

    /// Into its place by arrival order.
    void put_back(std::size_t q, m_entry e) {
        m_queue& queue = queues[q];
        auto& level = queue.levels[e.level];
        auto pos = std::lower_bound(level.begin(), level.end(), e.sequence,
                                    [](const m_entry& x, std::uint64_t s) { return x.sequence < s; });
        ++queue.ready;
        queue.ready_bytes += body_bytes(e);
        level.insert(pos, std::move(e));
    }

    bool can_take(m_consumer& c) {
        if (c.blocked) return false;
        if (c.manual && c.prefetch != 0 && c.unacked >= c.prefetch) {
            c.blocked = true;
            return false;
        }
        return true;
    }

    std::size_t pick(m_queue& queue) {
        if (queue.config.single_active) {
            std::size_t active = no_index;
            for (std::size_t i = 0; i < queue.consumers.size(); ++i) {
                if (active == no_index || queue.consumers[i].id < queue.consumers[active].id) active = i;
            }
            if (active == no_index) return no_index;
            return can_take(queue.consumers[active]) ? active : no_index;
        }
        std::size_t best = no_index;
        for (std::size_t i = 0; i < queue.consumers.size(); ++i) {
            if (!can_take(queue.consumers[i])) continue;
            if (best == no_index || queue.consumers[i].priority > queue.consumers[best].priority) best = i;
        }
        return best;
    }

    std::optional<m_delivery> next_callback(std::size_t q) {
        m_queue& queue = queues[q];
        if (!queue.handed.empty()) {
            m_delivery d = std::move(queue.handed.front().delivery);
            queue.handed.pop_front();
            return d;
        }
        if (queue.ready == 0 || queue.consumers.empty()) return std::nullopt;
        expire_heads(q);
        const std::size_t index = queue.ready == 0 ? no_index : pick(queue);
        std::optional<m_delivery> d;
        if (index != no_index) {
            m_consumer c = queue.consumers[index];
            queue.consumers.erase(queue.consumers.begin() + static_cast<std::ptrdiff_t>(index));
            d = hand_out(q, take_head(q), c.id, c.manual, c.tag);
            expire_heads(q);
            if (c.manual) ++c.unacked;
            queue.consumers.push_back(c); // the one served goes to the back
        }
        route_letters();
        return d;
    }
};

} // namespace warren_test::queue_model
