// Counters (stats.hpp): every message a queue accepted is accounted for, and the counters
// agree with an independent model of RabbitMQ's classic queues under a random workload:
// publishes with priorities and expirations into queues with length limits (all three
// x-overflow modes), TTLs, priorities, single active consumer and dead-letter exchanges,
// consumers with prefetch, gets, acks, nacks, rejects, purges and the passage of time.

#include <warren/broker.hpp>
#include <warren/clock.hpp>
#include <warren/stats.hpp>
#include <warren/topology.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "support/broker_io.hpp"
#include "support/catch.hpp"
#include "support/errors.hpp"

using warren_test::error_of;
using warren_test::send;
using warren_test::strings;
using warren_test::to_queue;

namespace {

using namespace std::chrono_literals;
using ms = std::int64_t;
constexpr ms never = std::numeric_limits<ms>::max();
constexpr std::size_t no_index = static_cast<std::size_t>(-1);

// ---------------------------------------------------------------------------------------
// The model: RabbitMQ 3.10 classic queues as the documentation and rabbit_amqqueue_process
// describe them, written independently of queue.hpp.

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
    warren::queue_counters counters;
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
        queue.ready_bytes += body_bytes(msg);
        ++queue.ready;
        ++queue.counters.enqueued;
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
            auto& level = queue.levels[e.level];
            auto pos = std::lower_bound(level.begin(), level.end(), e.sequence,
                                        [](const m_entry& x, std::uint64_t s) { return x.sequence < s; });
            ++queue.ready;
            queue.ready_bytes += body_bytes(e);
            level.insert(pos, std::move(e));
        } else {
            let_go(q, std::move(u.entry), warren::death_reason::rejected);
        }
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

// ---------------------------------------------------------------------------------------
// Comparing the broker with the model.

std::string diff_counters(const warren::queue_counters& got, const warren::queue_counters& want) {
    std::ostringstream out;
    auto field = [&](const char* name, std::uint64_t g, std::uint64_t w) {
        if (g != w) out << ' ' << name << " is " << g << ", model " << w << ';';
    };
    field("enqueued", got.enqueued, want.enqueued);
    field("refused", got.refused, want.refused);
    field("delivered", got.delivered, want.delivered);
    field("redelivered", got.redelivered, want.redelivered);
    field("acked", got.acked, want.acked);
    field("requeued", got.requeued, want.requeued);
    field("dead_lettered.expired", got.dead_lettered.expired, want.dead_lettered.expired);
    field("dead_lettered.maxlen", got.dead_lettered.maxlen, want.dead_lettered.maxlen);
    field("dead_lettered.rejected", got.dead_lettered.rejected, want.dead_lettered.rejected);
    field("dropped.expired", got.dropped.expired, want.dropped.expired);
    field("dropped.maxlen", got.dropped.maxlen, want.dropped.maxlen);
    field("dropped.rejected", got.dropped.rejected, want.dropped.rejected);
    field("purged", got.purged, want.purged);
    field("ready", got.ready, want.ready);
    field("unacked", got.unacked, want.unacked);
    field("ready_bytes", got.ready_bytes, want.ready_bytes);
    field("consumers", got.consumers, want.consumers);
    return out.str();
}

std::string diff_exchange(const warren::exchange_counters& got, const m_exchange& want) {
    std::ostringstream out;
    auto field = [&](const char* name, std::uint64_t g, std::uint64_t w) {
        if (g != w) out << ' ' << name << " is " << g << ", model " << w << ';';
    };
    field("published", got.published, want.published);
    field("unroutable", got.unroutable, want.unroutable);
    field("routed", got.routed, want.published - want.unroutable);
    field("returned", got.returned, want.returned);
    field("nacked", got.nacked, want.nacked);
    if (got.published != got.routed + got.unroutable) out << " published != routed + unroutable;";
    return out.str();
}

std::string header_text(const warren::properties& p, std::string_view name) {
    const warren::field_value* v = p.headers.find(name);
    const std::string* s = v == nullptr ? nullptr : v->get_if<std::string>();
    return s == nullptr ? std::string() : *s;
}

/// What a delivery looks like next to the model's.
template <class Delivery>
m_delivery seen(const std::string& queue, const std::string& consumer, const Delivery& d) {
    const std::string reason = header_text(d.properties(), "x-first-death-reason");
    return {queue,
            consumer,
            d.body(),
            d.delivery_tag(),
            d.redelivered(),
            d.routing_key(),
            reason.empty() ? "" : reason + "@" + header_text(d.properties(), "x-first-death-queue")};
}

strings lines(const std::vector<m_delivery>& ds) {
    strings out;
    for (const auto& d : ds) out.push_back(d.line());
    return out;
}

/// The random workload for one seed, against one broker type.
template <class Broker>
class workload {
public:
    using delivery = typename Broker::delivery;
    using subscription = typename Broker::subscription;

    explicit workload(std::uint32_t seed) : rng_(seed), broker_(clock_) {
        broker_.set_return_handler(
            [this](typename Broker::returned_message& r) { returned_.push_back(r.message.body); });
        broker_.declare_exchange("fan", "fanout");
        broker_.declare_exchange("dir", "direct");
        broker_.declare_exchange("dlx", "fanout");
        const std::size_t normal = 3;
        for (std::size_t i = 0; i < normal; ++i) declare("q" + std::to_string(i), random_config(true));
        model_.dead = declare("dead", random_config(false));
        broker_.bind_queue("dead", "dlx");
        for (std::size_t i = 0; i < normal; ++i) {
            if (chance(60)) {
                broker_.bind_queue(model_.queues[i].name, "fan");
                model_.fanout_targets.push_back(i);
            }
            const std::string own = "k" + std::to_string(i);
            broker_.bind_queue(model_.queues[i].name, "dir", own);
            model_.direct_bindings[own].insert(i);
            if (chance(50)) {
                broker_.bind_queue(model_.queues[i].name, "dir", "shared");
                model_.direct_bindings["shared"].insert(i);
            }
        }
    }

    [[nodiscard]] std::string topology() const {
        std::ostringstream out;
        for (const auto& q : model_.queues) out << q.name << ':' << q.config.describe() << "; ";
        out << "fan ->";
        for (std::size_t t : model_.fanout_targets) out << ' ' << model_.queues[t].name;
        return out.str();
    }

    /// One random operation; returns what it was, for the failure report.
    std::string step() {
        std::string what;
        const int roll = between(0, 99);
        if (roll < 30) what = publish();
        else if (roll < 40) what = get();
        else if (roll < 55) what = settle();
        else if (roll < 62) what = subscribe();
        else if (roll < 67) what = unsubscribe();
        else if (roll < 80) what = dispatch();
        else if (roll < 83) what = purge();
        else if (roll < 91) what = advance();
        else if (roll < 94) what = expire();
        else if (roll < 97) what = count();
        else what = settle_stale();
        return what;
    }

    /// Compares every queue and exchange with the model; returns the differences. With
    /// `with_expiry` it reads through queue_stats(), which first removes expired heads, as
    /// RabbitMQ's timers would have; otherwise through snapshot(), which changes nothing.
    std::string check(bool with_expiry) {
        std::ostringstream out;
        std::vector<warren::queue_counters> got(model_.queues.size());
        if (with_expiry) {
            for (std::size_t q = 0; q < model_.queues.size(); ++q) {
                got[q] = broker_.queue_stats(model_.queues[q].name);
                model_.expire(q);
                if (got[q].consumers != model_.queues[q].consumers.size()) out << " consumers differ;";
            }
        } else {
            const auto snap = broker_.snapshot();
            for (std::size_t q = 0; q < model_.queues.size(); ++q) {
                const auto* s = snap.find_queue(model_.queues[q].name);
                if (s == nullptr) return "queue " + model_.queues[q].name + " missing from the snapshot";
                got[q] = s->counters;
            }
        }
        std::uint64_t pushed = 0; // every queue's enqueued and refused
        for (std::size_t q = 0; q < model_.queues.size(); ++q) {
            const auto& c = got[q];
            const std::string d = diff_counters(c, model_.counters(q));
            if (!d.empty()) out << model_.queues[q].name << ':' << d << ' ';
            if (!c.accounted()) out << model_.queues[q].name << ": not accounted; ";
            const auto held = static_cast<std::size_t>(std::count_if(
                held_.begin(), held_.end(), [&](const held_delivery& h) { return h.queue == q; }));
            if (c.unacked != held) {
                out << model_.queues[q].name << ": unacked " << c.unacked << " but the test holds " << held << "; ";
            }
            pushed += c.enqueued + c.refused;
        }
        for (const auto& [name, want] : model_.exchanges) {
            const std::string d = diff_exchange(broker_.exchange_stats(name), want);
            if (!d.empty()) out << "exchange '" << name << "':" << d << ' ';
        }
        if (broker_.stats().dead_letters_without_exchange != model_.without_exchange) {
            out << "dead_letters_without_exchange is " << broker_.stats().dead_letters_without_exchange << ", model "
                << model_.without_exchange << "; ";
        }
        if (broker_.stats().dead_letter_cycles != 0) out << "dead-letter cycles where there are none; ";
        // Every publish was unroutable, refused or enqueued: queues took or refused exactly
        // what the confirms said, plus the dead letters the dlx exchange routed.
        const auto dlx = broker_.exchange_stats("dlx");
        if (pushed != confirmed_ + dlx.routed) {
            out << "queues saw " << pushed << " messages, publishes confirmed " << confirmed_ << " and dlx routed "
                << dlx.routed << "; ";
        }
        // Each dead letter went to its queue's dead-letter exchange, or counted as having none:
        // what the queues let go of (and reject-publish-dlx refused) and no more.
        std::uint64_t to_dlx = 0;
        std::uint64_t to_missing = 0;
        for (std::size_t q = 0; q < model_.queues.size(); ++q) {
            const m_config& cfg = model_.queues[q].config;
            const bool refusals_die = cfg.overflow == warren::overflow_mode::reject_publish_dlx;
            const std::uint64_t letters = got[q].dead_lettered.total() + (refusals_die ? got[q].refused : 0);
            if (cfg.dlx == "dlx") to_dlx += letters;
            else if (cfg.dlx == "missing") to_missing += letters;
        }
        if (dlx.published != to_dlx) {
            out << "dlx published " << dlx.published << ", queues dead-lettered " << to_dlx << "; ";
        }
        if (broker_.stats().dead_letters_without_exchange != to_missing) {
            out << "dead letters without exchange differ from what the queues let go: " << to_missing << "; ";
        }
        if (returned_ != returns_expected_) {
            out << "the return handler got other messages than the unroutable mandatory ones; ";
        }
        return out.str();
    }

private:
    struct held_delivery {
        std::size_t queue;
        delivery d;
    };
    struct consumer_handle {
        std::size_t queue;
        std::uint64_t id;
        std::string tag;
        bool manual;
        subscription sub;
    };

    std::mt19937 rng_;
    warren::manual_clock clock_;
    Broker broker_;
    model model_;
    std::vector<held_delivery> held_;  // manual deliveries not yet settled
    std::vector<delivery> stale_;      // deliveries whose consumer ended: settling them must fail
    std::vector<consumer_handle> consumers_;
    std::vector<m_delivery> pushed_;   // what callbacks received in the current dispatch
    strings returned_;
    strings returns_expected_;
    std::uint64_t confirmed_ = 0;      // routed + refused over every publish
    std::uint64_t next_message_ = 0;
    std::uint64_t next_tag_ = 0;

    int between(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
    bool chance(int percent) { return between(0, 99) < percent; }
    std::size_t pick_queue() {
        return static_cast<std::size_t>(between(0, static_cast<int>(model_.queues.size()) - 1));
    }

    m_config random_config(bool may_dead_letter) {
        m_config c;
        if (chance(55)) c.max_length = static_cast<std::uint64_t>(between(0, 6));
        if (chance(30)) c.max_bytes = static_cast<std::uint64_t>(between(0, 60));
        const int overflow = between(0, 2);
        c.overflow = overflow == 0 ? warren::overflow_mode::drop_head
                                   : overflow == 1 ? warren::overflow_mode::reject_publish
                                                   : warren::overflow_mode::reject_publish_dlx;
        if (chance(40)) c.ttl = between(0, 60);
        if (may_dead_letter) {
            const int dlx = between(0, 9);
            if (dlx < 5) c.dlx = "dlx";
            else if (dlx < 7) c.dlx = "missing";
            if (!c.dlx.empty() && chance(30)) c.dl_key = "dead-key";
        }
        if (chance(50)) c.max_priority = static_cast<std::uint8_t>(between(0, 5));
        c.single_active = chance(20);
        return c;
    }

    std::size_t declare(const std::string& name, const m_config& config) {
        broker_.declare_queue(name, config.options());
        return model_.add_queue(name, config);
    }

    std::string publish() {
        typename Broker::message_type msg;
        std::string exchange;
        const int where = between(0, 9);
        if (where < 4) {
            exchange = "";
            msg.routing_key = chance(10) ? "nowhere" : model_.queues[pick_queue()].name;
        } else if (where < 7) {
            exchange = "fan";
            msg.routing_key = "any";
        } else {
            exchange = "dir";
            const int key = between(0, 4);
            msg.routing_key = key < 3 ? "k" + std::to_string(key) : key == 3 ? "shared" : "none";
        }
        msg.body = "m" + std::to_string(next_message_++) + std::string(static_cast<std::size_t>(between(0, 12)), '.');
        m_entry e;
        e.body = msg.body;
        e.key = msg.routing_key;
        if (chance(50)) {
            e.priority = static_cast<std::uint8_t>(between(0, 9));
            msg.properties.priority = e.priority;
        }
        if (chance(25)) {
            e.message_ttl = between(0, 40);
            msg.properties.expiration = std::to_string(*e.message_ttl);
        }
        const bool mandatory = chance(30);
        const std::string what = "publish " + msg.body + " to '" + exchange + "' key " + msg.routing_key +
                                 (e.priority ? " priority " + std::to_string(*e.priority) : "") +
                                 (e.message_ttl ? " expiration " + std::to_string(*e.message_ttl) : "") +
                                 (mandatory ? " mandatory" : "");
        INFO(what);
        const warren::confirmation want = model_.publish(exchange, e, mandatory);
        const warren::confirmation got = broker_.publish_confirmed(exchange, std::move(msg), {.mandatory = mandatory});
        confirmed_ += got.routed + got.refused;
        if (want.returned) returns_expected_.push_back(e.body);
        REQUIRE(got.ack == want.ack);
        REQUIRE(got.routed == want.routed);
        REQUIRE(got.refused == want.refused);
        REQUIRE(got.returned == want.returned);
        return what;
    }

    std::string get() {
        const std::size_t q = pick_queue();
        const bool manual = chance(60);
        INFO("try_get " << model_.queues[q].name << (manual ? " manual" : " automatic"));
        const auto want = model_.try_get(q, manual);
        const auto mode = manual ? warren::ack_mode::manual : warren::ack_mode::automatic;
        auto got = broker_.try_get(model_.queues[q].name, mode);
        REQUIRE(got.has_value() == want.has_value());
        if (got) {
            REQUIRE(seen(model_.queues[q].name, "", *got).line() == want->line());
            if (manual) held_.push_back({q, std::move(*got)});
        }
        return std::string("try_get ") + (manual ? "manual " : "automatic ") + model_.queues[q].name;
    }

    std::string settle() {
        if (held_.empty()) return "settle: nothing held";
        const std::size_t i = static_cast<std::size_t>(between(0, static_cast<int>(held_.size()) - 1));
        const std::size_t q = held_[i].queue;
        const std::uint64_t tag = held_[i].d.delivery_tag();
        const bool multiple = chance(20);
        const int kind = between(0, 2); // ack, requeue, reject without requeue
        std::string what = "settle " + held_[i].d.body() + " #" + std::to_string(tag) + " of " + model_.queues[q].name;
        if (kind == 0) {
            what += multiple ? ": ack multiple" : ": ack";
            model_.settle(q, tag, multiple, true, false);
            held_[i].d.ack(multiple);
        } else {
            const bool requeue = kind == 1;
            const bool nack = multiple || chance(50); // reject is nack without multiple
            what += nack ? ": nack" : ": reject";
            what += std::string(multiple ? " multiple" : "") + (requeue ? " requeue" : "");
            model_.settle(q, tag, multiple, false, requeue);
            if (nack) held_[i].d.nack(multiple, requeue);
            else held_[i].d.reject(requeue);
        }
        forget_settled();
        return what;
    }

    void forget_settled() {
        auto settled = [&](const held_delivery& h) { return !model_.has_unacked(h.queue, h.d.delivery_tag()); };
        held_.erase(std::remove_if(held_.begin(), held_.end(), settled), held_.end());
    }

    std::string subscribe() {
        const std::size_t q = pick_queue();
        const bool manual = chance(65);
        const auto prefetch = static_cast<std::uint16_t>(manual ? between(0, 3) : 0);
        const auto priority = static_cast<std::int32_t>(between(-2, 2));
        const std::string tag = "c" + std::to_string(++next_tag_);
        warren::consumer_options o;
        o.tag = tag;
        o.ack = manual ? warren::ack_mode::manual : warren::ack_mode::automatic;
        o.prefetch = prefetch;
        o.priority = priority;
        const std::string queue = model_.queues[q].name;
        auto sub = broker_.subscribe(
            queue,
            [this, q, queue, tag, manual](delivery& d) {
                pushed_.push_back(seen(queue, tag, d));
                if (manual) held_.push_back({q, std::move(d)});
            },
            o);
        const std::uint64_t id = model_.subscribe(q, tag, manual, prefetch, priority);
        consumers_.push_back({q, id, tag, manual, std::move(sub)});
        return "subscribe " + tag + " to " + queue +
               (manual ? " manual prefetch " + std::to_string(prefetch) : std::string(" automatic")) + " priority " +
               std::to_string(priority);
    }

    std::string unsubscribe() {
        if (consumers_.empty()) return "unsubscribe: no consumers";
        const std::size_t i = static_cast<std::size_t>(between(0, static_cast<int>(consumers_.size()) - 1));
        consumer_handle c = std::move(consumers_[i]);
        consumers_.erase(consumers_.begin() + static_cast<std::ptrdiff_t>(i));
        model_.cancel(c.queue, c.id);
        c.sub.release();
        // Its deliveries went back to the queue: settling them now is an unknown tag.
        auto theirs = std::stable_partition(held_.begin(), held_.end(), [&](const held_delivery& h) {
            return h.queue != c.queue || h.d.consumer_tag() != c.tag;
        });
        for (auto it = theirs; it != held_.end(); ++it) stale_.push_back(std::move(it->d));
        held_.erase(theirs, held_.end());
        return "unsubscribe " + c.tag;
    }

    std::string settle_stale() {
        if (stale_.empty()) return "settle stale: none";
        delivery d = std::move(stale_.back());
        stale_.pop_back();
        const std::string tag = std::to_string(d.delivery_tag());
        REQUIRE(error_of([&] { d.ack(); }) == "406 PRECONDITION_FAILED - unknown delivery tag " + tag);
        return "ack the stale delivery #" + tag;
    }

    std::string dispatch() {
        const std::size_t budget = chance(30) ? std::numeric_limits<std::size_t>::max()
                                              : static_cast<std::size_t>(between(1, 4));
        INFO("dispatch " << budget << "; consumers before:" << consumer_states());
        const std::vector<m_delivery> want = model_.dispatch(budget);
        pushed_.clear();
        const std::size_t n = broker_.dispatch(budget);
        REQUIRE(n == want.size());
        REQUIRE(lines(pushed_) == lines(want));
        const bool all = budget == std::numeric_limits<std::size_t>::max();
        return "dispatch " + (all ? std::string("all") : std::to_string(budget));
    }

    /// The model's consumers, rotation order: "q0[c1 2/3 blocked, ...]".
    std::string consumer_states() const {
        std::ostringstream out;
        for (const auto& q : model_.queues) {
            out << ' ' << q.name << "[";
            for (const auto& c : q.consumers) {
                out << c.tag << ' ' << c.unacked << '/' << c.prefetch << (c.blocked ? " blocked" : "") << ", ";
            }
            out << "ready " << q.ready << "]";
        }
        return out.str();
    }

    std::string purge() {
        const std::size_t q = pick_queue();
        INFO("purge " << model_.queues[q].name);
        const std::size_t want = model_.purge(q);
        REQUIRE(broker_.purge_queue(model_.queues[q].name) == want);
        return "purge " + model_.queues[q].name;
    }

    std::string advance() {
        const int step = between(0, 30);
        clock_.advance(std::chrono::milliseconds(step));
        model_.now += step;
        return "advance " + std::to_string(step) + " ms to " + std::to_string(model_.now);
    }

    std::string expire() {
        model_.expire_all();
        broker_.expire();
        return "expire";
    }

    std::string count() {
        const std::size_t q = pick_queue();
        INFO("message_count " << model_.queues[q].name);
        model_.expire(q);
        REQUIRE(broker_.message_count(model_.queues[q].name) == model_.queues[q].ready);
        return "message_count " + model_.queues[q].name;
    }
};

} // namespace

// ---------------------------------------------------------------------------------------

TEMPLATE_TEST_CASE("stats: every message is accounted for under a random workload, and the counters match a "
                   "model of RabbitMQ's classic queues",
                   "[stats][random]", warren::broker, warren::concurrent_broker) {
    constexpr int steps = 600;
    for (const std::uint32_t seed : {1U, 2U, 3U, 4U, 5U, 6U, 7U, 8U, 9U, 10U, 11U, 12U}) {
        workload<TestType> w(seed);
        INFO("seed " << seed << "; " << w.topology());
        std::mt19937 checks(seed * 7919U);
        std::string history; // the last few operations, for the report
        for (int step = 0; step < steps; ++step) {
            INFO("after" << history << "\n  " << step << ": (failed here)");
            const std::string what = w.step();
            history = (history.size() > 3000 ? history.substr(history.size() - 3000) : history) + "\n  " +
                      std::to_string(step) + ": " + what;
            INFO("after" << history);
            // Mostly read without side effects (snapshot); sometimes through queue_stats,
            // which applies expiry first.
            const bool with_expiry = std::uniform_int_distribution<int>(0, 3)(checks) == 0;
            const std::string diff = w.check(with_expiry);
            REQUIRE(diff == "");
        }
    }
}

TEMPLATE_TEST_CASE("stats: exchange counters: published == routed + unroutable, returns and nacks counted",
                   "[stats][exchange]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_exchange("x", "direct");
    warren::queue_options small;
    small.arguments.set("x-max-length", 1);
    small.arguments.set("x-overflow", "reject-publish");
    b.declare_queue("a");
    b.declare_queue("full", small);
    b.bind_queue("a", "x", "a");
    b.bind_queue("full", "x", "full");
    b.bind_queue("a", "x", "both");
    b.bind_queue("full", "x", "both");
    int returned = 0;
    b.set_return_handler([&](auto&) { ++returned; });

    auto publish = [&](std::string key, bool mandatory) {
        return b.publish_confirmed("x", warren_test::msg(std::move(key), "m"), {.mandatory = mandatory});
    };
    CHECK(publish("a", false).routed == 1);
    CHECK(publish("full", false).ack);          // takes the one place
    const auto refused = publish("full", true); // refused: nacked, not returned
    CHECK_FALSE(refused.ack);
    CHECK(refused.routed == 0);
    CHECK(refused.refused == 1);
    CHECK_FALSE(refused.returned);
    const auto half = publish("both", false); // one queue takes it, one refuses
    CHECK_FALSE(half.ack);
    CHECK(half.routed == 1);
    CHECK(half.refused == 1);
    const auto lost = publish("nobody", true);
    CHECK(lost.ack);
    CHECK(lost.returned);
    CHECK(publish("nobody", false).routed == 0);

    const auto s = b.exchange_stats("x");
    CHECK(s.published == 6);
    CHECK(s.unroutable == 2);
    CHECK(s.routed == 4); // a refused message was routed: it is nacked, never returned
    CHECK(s.published == s.routed + s.unroutable);
    CHECK(s.returned == 1);
    CHECK(s.nacked == 2);
    CHECK(returned == 1);
    CHECK(b.queue_stats("full").refused == 2);
    CHECK(b.queue_stats("full").enqueued == 1);
    CHECK(b.queue_stats("a").enqueued == 2);
    // The default exchange counts too.
    send(b, "a", {"direct"});
    CHECK(b.publish("", warren_test::msg("missing", "m")) == 0);
    const auto d = b.exchange_stats("");
    CHECK(d.published == 2);
    CHECK(d.unroutable == 1);
    CHECK(d.routed == 1);
}

TEMPLATE_TEST_CASE("stats: dead letters are counted where they go: the dead-letter exchange, or nowhere when it "
                   "does not exist",
                   "[stats][dlx]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_exchange("dlx", "fanout");
    b.declare_queue("dead");
    b.bind_queue("dead", "dlx");
    warren::queue_options to_dlx;
    to_dlx.arguments.set("x-dead-letter-exchange", "dlx");
    to_dlx.arguments.set("x-max-length", 1);
    warren::queue_options to_missing;
    to_missing.arguments.set("x-dead-letter-exchange", "missing");
    b.declare_queue("q", to_dlx);
    b.declare_queue("lost", to_missing);
    send(b, "q", {"a", "b", "c"}); // a and b dropped from the head
    send(b, "lost", {"x"});
    b.try_get("lost", warren::ack_mode::manual)->reject(false);

    const auto q = b.queue_stats("q");
    CHECK(q.enqueued == 3);
    CHECK(q.dead_lettered.maxlen == 2);
    CHECK(q.dropped.total() == 0);
    CHECK(q.ready == 1);
    CHECK(q.accounted());
    const auto lost = b.queue_stats("lost");
    CHECK(lost.dead_lettered.rejected == 1); // dead-lettered: its exchange just is not there
    CHECK(lost.accounted());
    CHECK(b.stats().dead_letters_without_exchange == 1);
    CHECK(b.exchange_stats("dlx").published == 2);
    CHECK(b.exchange_stats("dlx").routed == 2);
    CHECK(warren_test::drain(b, "dead") == strings{"a", "b"});
    CHECK(b.queue_stats("dead").enqueued == 2);
}

TEMPLATE_TEST_CASE("stats: in a priority queue an expired message behind an unexpired head still counts as ready "
                   "(RabbitMQ ttl.html: expired messages are removed only at the head)",
                   "[stats][ttl][x-max-priority]", warren::broker, warren::concurrent_broker) {
    warren::manual_clock time;
    TestType b(time);
    warren::queue_options options;
    options.arguments.set("x-max-priority", 5);
    options.arguments.set("x-message-ttl", 100);
    b.declare_queue("q", options);
    auto publish = [&](std::string body, std::uint8_t priority) {
        auto m = to_queue<TestType>("q", body);
        m.properties.priority = priority;
        REQUIRE(b.publish("", std::move(m)) == 1);
    };
    publish("low", 1);
    time.advance(50ms);
    publish("high", 5);
    time.advance(60ms); // low's TTL has passed, high's has not
    CHECK(b.message_count("q") == 2);
    CHECK(b.queue_stats("q").dropped.expired == 0);
    time.advance(50ms); // high's too: both go, high first
    CHECK(b.message_count("q") == 0);
    const auto s = b.queue_stats("q");
    CHECK(s.dropped.expired == 2);
    CHECK(s.accounted());
}
