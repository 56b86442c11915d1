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
#include "support/queue_model.hpp"

using warren_test::error_of;
using warren_test::header_text;
using warren_test::send;
using warren_test::strings;
using warren_test::to_queue;

namespace {

using namespace std::chrono_literals;
using namespace warren_test::queue_model;

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

/// What a delivery looks like next to the model's.
template <class Delivery>
m_delivery seen(const std::string& queue, const std::string& consumer, const Delivery& d) {
    const std::string reason = header_text(d.properties(), "x-first-death-reason");
    return {queue,
            consumer,
            d.body(),
            d.delivery_tag(),
            d.redelivered(),
            std::string(d.routing_key()),
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
            // Unacked: what the test holds, and what was handed to a manual consumer whose
            // callback has not run yet.
            const auto& handed = model_.queues[q].handed;
            const auto held = static_cast<std::size_t>(std::count_if(
                                  held_.begin(), held_.end(), [&](const held_delivery& h) { return h.queue == q; })) +
                              static_cast<std::size_t>(std::count_if(handed.begin(), handed.end(),
                                                                     [](const auto& h) { return h.manual; }));
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
