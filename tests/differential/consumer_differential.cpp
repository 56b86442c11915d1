// Differential test: delivery to consumers, warren against a real RabbitMQ (3.10, classic
// queues). A message that finds its queue with nothing ready goes straight to a consumer
// with credit (rabbit_amqqueue_process:deliver_or_enqueue): it never counts against
// x-max-length, a TTL of 0 still reaches the consumer, reject-publish refuses first, a
// consumer that goes away gives its deliveries back redelivered, and what finds every
// consumer at its prefetch limit waits ready under the queue's limits.
//
// Each scenario is a short script of steps run on both sides through one interface (the
// `side` below); each side writes what it observes into a log: the confirm of every
// publish, what each consumer received (body, '*' if redelivered), ready counts, and the
// dead letters with their x-first-death-reason. The two logs must be equal.
//
// RabbitMQ delivers to consumers and routes dead letters asynchronously, so its side
// waits: for deliveries, until none arrives for `--quiet-ms` (default 300 ms); for dead
// letters, until the dead-letter queue has stayed empty that long. warren's side is
// synchronous: a checkpoint is a dispatch().
//
// tests/differential/run.sh starts a private server and runs this (see --help).

#include <amqp.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <warren/warren.hpp>

#include "amqp_client.hpp"
#include "scenario_main.hpp"

namespace {

using differential::amqp_client;
using differential::fatal;
using differential::got_message;
using differential::integer;
using differential::str;
using differential::table;

using options = differential::scenario_options;

/// What a scenario does, on either side. Queues and consumers are named by the scenario;
/// every consumer acks manually.
class side {
public:
    virtual ~side() = default;
    virtual void declare_queue(const std::string& name, const table& arguments) = 0;
    virtual void subscribe(const std::string& consumer, const std::string& queue, std::uint16_t prefetch) = 0;
    /// Publishes `body` to `queue` through the default exchange; logs the confirm.
    virtual void publish(const std::string& queue, const std::string& body) = 0;
    /// Logs what `consumer` received since the last call.
    virtual void received(const std::string& consumer) = 0;
    /// Acks everything `consumer` holds.
    virtual void ack_all(const std::string& consumer) = 0;
    /// Ends `consumer` (RabbitMQ: its connection closes), which gives back what it holds.
    virtual void end(const std::string& consumer) = 0;
    /// Logs the ready messages of `queue`.
    virtual void ready(const std::string& queue) = 0;
    /// Takes every message of `queue` with basic.get and logs them, with their
    /// x-first-death-reason.
    virtual void drain(const std::string& queue) = 0;

    std::vector<std::string> log;
};

std::string death_reason(const table& headers) {
    for (const auto& f : headers) {
        if (f.name == "x-first-death-reason") return f.v.text;
    }
    return {};
}

std::string describe_got(const std::string& body, bool redelivered, const std::string& reason) {
    return body + (redelivered ? "*" : "") + (reason.empty() ? "" : " (" + reason + ")");
}

// ---------------------------------------------------------------------------------------
// warren's side

class warren_side final : public side {
public:
    void declare_queue(const std::string& name, const table& arguments) override {
        warren::queue_options o;
        o.arguments = differential::to_warren(arguments);
        broker_.declare_queue(name, o);
    }
    void subscribe(const std::string& consumer, const std::string& queue, std::uint16_t prefetch) override {
        consumer_state& c = consumers_[consumer];
        c.sub = broker_.subscribe(
            queue,
            [&c](warren::delivery& d) {
                c.arrived.push_back(describe_got(d.body(), d.redelivered(), ""));
                c.held.push_back(std::move(d));
            },
            {.ack = warren::ack_mode::manual, .prefetch = prefetch});
    }
    void publish(const std::string& queue, const std::string& body) override {
        const auto c = broker_.publish_confirmed("", {.routing_key = queue, .body = body});
        log.push_back("publish " + body + ": " + (c.ack ? "ack" : "nack"));
    }
    void received(const std::string& consumer) override {
        (void)broker_.dispatch();
        consumer_state& c = consumers_.at(consumer);
        log.push_back(consumer + " received:" + joined(c.arrived));
        c.arrived.clear();
    }
    void ack_all(const std::string& consumer) override {
        consumer_state& c = consumers_.at(consumer);
        if (!c.held.empty()) c.held.back().ack(true);
        c.held.clear();
    }
    void end(const std::string& consumer) override {
        consumer_state& c = consumers_.at(consumer);
        c.sub.release();
        c.held.clear();
    }
    void ready(const std::string& queue) override {
        log.push_back(queue + " ready: " + std::to_string(broker_.message_count(queue)));
    }
    void drain(const std::string& queue) override {
        std::vector<std::string> got;
        while (auto d = broker_.try_get(queue)) {
            const std::string* reason = d->properties().headers.find_string("x-first-death-reason");
            got.push_back(describe_got(d->body(), d->redelivered(), reason == nullptr ? "" : *reason));
        }
        log.push_back(queue + " holds:" + joined(got));
    }

private:
    static std::string joined(const std::vector<std::string>& items) {
        std::string out;
        for (const auto& i : items) out += " " + i;
        return out;
    }
    struct consumer_state {
        warren::subscription sub;
        std::vector<warren::delivery> held;
        std::vector<std::string> arrived;
    };
    warren::broker broker_;
    std::map<std::string, consumer_state> consumers_;
};

// ---------------------------------------------------------------------------------------
// RabbitMQ's side

class rabbit_side final : public side {
public:
    rabbit_side(const options& opts, std::string prefix) : opts_(opts), prefix_(std::move(prefix)),
        main_(opts.host, opts.port, opts.connect_timeout) {}
    ~rabbit_side() override {
        consumers_.clear();
        for (const auto& q : queues_) (void)main_.delete_queue(q);
    }

    void declare_queue(const std::string& name, const table& arguments) override {
        table args = arguments;
        for (auto& f : args) { // dead letters go to a queue of this run
            if (f.name == "x-dead-letter-routing-key") f.v = str(prefix_ + f.v.text);
        }
        if (main_.declare_queue(prefix_ + name, args) != 0) throw fatal("queue.declare " + name + ": " + main_.last_error());
        queues_.push_back(prefix_ + name);
    }
    void subscribe(const std::string& consumer, const std::string& queue, std::uint16_t prefetch) override {
        auto c = std::make_unique<amqp_client>(opts_.host, opts_.port, opts_.connect_timeout, false);
        amqp_basic_qos_t qos{};
        qos.prefetch_count = prefetch;
        if (c->rpc(AMQP_BASIC_QOS_METHOD, &qos, AMQP_BASIC_QOS_OK_METHOD) != 0) throw fatal("basic.qos refused");
        amqp_basic_consume_t m{};
        const std::string q = prefix_ + queue;
        m.queue = differential::amqp_arena::bytes(q);
        if (c->rpc(AMQP_BASIC_CONSUME_METHOD, &m, AMQP_BASIC_CONSUME_OK_METHOD) != 0) {
            throw fatal("basic.consume " + queue + ": " + c->last_error());
        }
        consumers_[consumer] = consumer_state{std::move(c), 0};
    }
    void publish(const std::string& queue, const std::string& body) override {
        amqp_basic_properties_t props{};
        const std::uint64_t tag = main_.publish("", prefix_ + queue, false, props, body);
        std::set<std::uint64_t> nacked;
        if (main_.settle([](int, std::string_view) {}, &nacked) != 0) throw fatal("publish " + body + ": " + main_.last_error());
        log.push_back("publish " + body + ": " + (nacked.count(tag) != 0 ? "nack" : "ack"));
    }
    void received(const std::string& consumer) override {
        consumer_state& c = consumers_.at(consumer);
        std::string line = consumer + " received:";
        for (;;) { // until none arrives for quiet_ms
            amqp_envelope_t envelope;
            timeval timeout{0, opts_.quiet_ms * 1000};
            amqp_maybe_release_buffers(c.client->connection());
            const amqp_rpc_reply_t r = amqp_consume_message(c.client->connection(), &envelope, &timeout, 0);
            if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && r.library_error == AMQP_STATUS_TIMEOUT) break;
            if (r.reply_type != AMQP_RESPONSE_NORMAL) throw fatal(consumer + ": reading a delivery failed");
            line += " " + describe_got(std::string(static_cast<const char*>(envelope.message.body.bytes), envelope.message.body.len),
                                       envelope.redelivered != 0, "");
            c.last_tag = envelope.delivery_tag;
            amqp_destroy_envelope(&envelope);
        }
        log.push_back(line);
    }
    void ack_all(const std::string& consumer) override {
        consumer_state& c = consumers_.at(consumer);
        if (c.last_tag == 0) return;
        amqp_basic_ack_t ack{};
        ack.delivery_tag = c.last_tag;
        ack.multiple = 1;
        c.client->send(AMQP_BASIC_ACK_METHOD, &ack);
        c.last_tag = 0;
    }
    void end(const std::string& consumer) override { consumers_.erase(consumer); } // closes its connection
    void ready(const std::string& queue) override {
        std::uint32_t count = 0;
        settle_dead_letters();
        if (main_.declare_queue(prefix_ + queue, {}, true, &count) != 0) throw fatal("passive declare " + queue);
        log.push_back(queue + " ready: " + std::to_string(count));
    }
    void drain(const std::string& queue) override {
        std::string line = queue + " holds:";
        auto quiet_until = std::chrono::steady_clock::now() + std::chrono::milliseconds(opts_.quiet_ms);
        while (std::chrono::steady_clock::now() < quiet_until) {
            std::optional<got_message> got;
            if (main_.get(prefix_ + queue, true, got) != 0) throw fatal("basic.get " + queue + ": " + main_.last_error());
            if (!got) {
                std::this_thread::sleep_for(std::chrono::milliseconds(10));
                continue;
            }
            line += " " + describe_got(got->body, got->redelivered, death_reason(got->headers));
            quiet_until = std::chrono::steady_clock::now() + std::chrono::milliseconds(opts_.quiet_ms);
        }
        log.push_back(line);
    }

private:
    /// Dead letters travel between queue processes on their own: give them time to land.
    void settle_dead_letters() const { std::this_thread::sleep_for(std::chrono::milliseconds(opts_.quiet_ms)); }

    struct consumer_state {
        std::unique_ptr<amqp_client> client;
        std::uint64_t last_tag = 0;
    };
    const options& opts_;
    std::string prefix_;
    amqp_client main_;
    std::map<std::string, consumer_state> consumers_;
    std::vector<std::string> queues_;
};

// ---------------------------------------------------------------------------------------
// The scenarios

table dead_lettering(table more = {}) {
    more.push_back({"x-dead-letter-exchange", str("")});
    more.push_back({"x-dead-letter-routing-key", str("dead")});
    return more;
}

struct scenario {
    const char* title;
    std::function<void(side&)> run;
};

std::vector<scenario> scenarios() {
    return {
        {"max-length 0 (drop-head): a message for an idle consumer is delivered, one for a busy consumer is dropped",
         [](side& s) {
             s.declare_queue("dead", {});
             s.declare_queue("q", dead_lettering({{"x-max-length", integer('l', 0)}}));
             s.subscribe("c", "q", 1);
             s.publish("q", "a");
             s.received("c");
             s.publish("q", "b");
             s.received("c");
             s.ready("q");
             s.drain("dead");
             s.ack_all("c");
             s.received("c");
         }},
        {"x-message-ttl 0: reaches an idle consumer, expires for a busy one",
         [](side& s) {
             s.declare_queue("dead", {});
             s.declare_queue("q", dead_lettering({{"x-message-ttl", integer('l', 0)}}));
             s.subscribe("c", "q", 1);
             s.publish("q", "a");
             s.received("c");
             s.publish("q", "b");
             s.drain("dead");
             s.ack_all("c");
             s.received("c");
         }},
        {"reject-publish at max-length 0 refuses even with an idle consumer",
         [](side& s) {
             s.declare_queue("q", {{"x-max-length", integer('l', 0)}, {"x-overflow", str("reject-publish")}});
             s.subscribe("c", "q", 1);
             s.publish("q", "a");
             s.received("c");
             s.ready("q");
         }},
        {"beyond the prefetch limit messages wait ready under x-max-length, and go on an ack",
         [](side& s) {
             s.declare_queue("dead", {});
             s.declare_queue("q", dead_lettering({{"x-max-length", integer('l', 1)}}));
             s.subscribe("c", "q", 1);
             s.publish("q", "a");
             s.publish("q", "b");
             s.publish("q", "c");
             s.received("c");
             s.ready("q");
             s.drain("dead");
             s.ack_all("c");
             s.received("c");
             s.ready("q");
         }},
        {"a consumer that goes away gives back what it was handed, redelivered, in order",
         [](side& s) {
             s.declare_queue("q", {});
             s.subscribe("c", "q", 2);
             s.publish("q", "a");
             s.publish("q", "b");
             s.publish("q", "c");
             s.received("c");
             s.ready("q");
             s.end("c");
             s.ready("q");
             s.subscribe("d", "q", 0);
             s.received("d");
         }},
        {"consumers with credit take turns as messages arrive",
         [](side& s) {
             s.declare_queue("q", {});
             s.subscribe("c1", "q", 1);
             s.subscribe("c2", "q", 1);
             s.publish("q", "a");
             s.publish("q", "b");
             s.publish("q", "c");
             s.received("c1");
             s.received("c2");
             s.ready("q");
             s.ack_all("c2");
             s.received("c2");
             s.received("c1");
         }},
    };
}

constexpr const char* usage_text =
    "usage: consumer_differential [--host H] [--port P] [--connect-timeout S] [--quiet-ms MS] [--verbose]\n"
    "Runs each consumer-delivery scenario on warren and on the RabbitMQ at H:P and compares\n"
    "what they observe. Exit status: 0 all agree, 1 a disagreement, 2 usage, 3 other failure.\n";

} // namespace

int main(int argc, char** argv) {
    return differential::run_scenarios<warren_side, rabbit_side>(
        "consumer_differential", "wc", usage_text, scenarios(), argc, argv);
}
