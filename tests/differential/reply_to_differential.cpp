// Differential test: RabbitMQ's direct reply-to (amq.rabbitmq.reply-to), warren against a
// real RabbitMQ (3.10). The requester consumes the pseudo-queue without declaring it; a
// request with reply_to = amq.rabbitmq.reply-to has it rewritten to the requester's
// address; the reply published to that address reaches the requester alone, once; a reply
// to a requester that cancelled is dropped; and the refusals, in RabbitMQ's words.
//
// RabbitMQ has channels and warren has none: on RabbitMQ each requester is a connection
// with one channel that both consumes and publishes its requests; on warren it is a
// subscription whose consumer tag the request names (publish_options::reply_consumer).
// Each scenario is a short script of steps run on both sides through one interface (the
// `side` below); each side logs what it observes. The two logs must be equal. Refusals are
// logged with their reply code, and with their text where it is direct reply-to's own
// (406); a 404's text differs (RabbitMQ adds "in vhost '/'") and is left out.
//
// RabbitMQ delivers asynchronously, so its side waits for deliveries until none arrives
// for `--quiet-ms` (default 300 ms); warren's side dispatches.
//
// tests/differential/run.sh starts a private server and runs this (see --help).

#include <amqp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
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

constexpr const char* pseudo_queue = "amq.rabbitmq.reply-to";

using options = differential::scenario_options;

/// A refusal as the log shows it: the code, and for 406 the text too.
std::string refusal(int code, const std::string& text) {
    return std::to_string(code) + (code == 406 ? " " + text : "");
}

/// What a scenario does, on either side. Requesters and the addresses they were given are
/// named by the scenario.
class side {
public:
    virtual ~side() = default;
    /// Declares an ordinary queue (for requests).
    virtual void declare_queue(const std::string& name) = 0;
    /// `requester` consumes amq.rabbitmq.reply-to, with automatic acks or not; logs the outcome.
    virtual void consume(const std::string& requester, bool no_ack) = 0;
    /// `requester` cancels its reply consumer.
    virtual void cancel(const std::string& requester) = 0;
    /// `requester` publishes `body` to `queue` (default exchange) with reply_to =
    /// `reply_to`; logs the outcome.
    virtual void request(const std::string& requester, const std::string& queue, const std::string& body,
                         const std::string& reply_to = pseudo_queue) = 0;
    /// Takes the next request of `queue` and logs its body and how its reply_to was
    /// rewritten; remembers it under `address`.
    virtual void take_request(const std::string& queue, const std::string& address) = 0;
    /// A responder publishes `body` to the default exchange with the routing key
    /// `address` names (or the literal key if it names none).
    virtual void reply(const std::string& address, const std::string& body) = 0;
    /// Logs what `requester` received since the last call: body, redelivered, exchange and
    /// the routing key (by the address name it equals).
    virtual void received(const std::string& requester) = 0;
    /// A passive declare of what `address` names (or the literal name); logs the outcome.
    virtual void passive_declare(const std::string& address) = 0;
    /// basic.get from `name`; logs the outcome.
    virtual void get(const std::string& name) = 0;

    std::vector<std::string> log;

protected:
    /// The address a name stands for, or the name itself.
    [[nodiscard]] std::string address_of(const std::string& name) const {
        const auto it = addresses_.find(name);
        return it == addresses_.end() ? name : it->second;
    }
    /// The name of the address `key` is, or the key if it is none.
    [[nodiscard]] std::string name_of(const std::string& key) const {
        for (const auto& [name, address] : addresses_) {
            if (address == key) return name;
        }
        return key;
    }
    void noted_request(const std::string& queue, const std::string& address, const std::string& body,
                       const std::optional<std::string>& reply_to) {
        std::string how = "none";
        if (reply_to) {
            const bool kept = std::find(sent_.begin(), sent_.end(), *reply_to) != sent_.end();
            how = !kept && reply_to->starts_with(std::string(pseudo_queue) + ".") ? "rewritten to an address"
                                                                                  : "kept '" + *reply_to + "'";
            addresses_[address] = *reply_to;
        }
        log.push_back(queue + " gave " + body + ", reply_to " + how);
    }
    /// Notes the reply_to a request was sent with.
    void sent(const std::string& reply_to) { sent_.push_back(reply_to); }
    std::map<std::string, std::string> addresses_;
    std::vector<std::string> sent_;
};

// ---------------------------------------------------------------------------------------
// warren's side

class warren_side final : public side {
public:
    void declare_queue(const std::string& name) override { broker_.declare_queue(name); }
    void consume(const std::string& requester, bool no_ack) override {
        try {
            auto& state = requesters_[requester];
            warren::subscription sub = broker_.subscribe(
                pseudo_queue,
                [this, &state](warren::delivery& d) {
                    state.arrived.push_back(d.body() + (d.redelivered() ? "*" : "") + " from '" + d.exchange() +
                                            "' key " + name_of(std::string(d.routing_key())));
                },
                {.tag = requester, .ack = no_ack ? warren::ack_mode::automatic : warren::ack_mode::manual});
            state.sub = std::move(sub);
            log.push_back("consume " + requester + ": ok");
        } catch (const warren::error& e) {
            log.push_back("consume " + requester + ": " + refusal(static_cast<int>(e.code()), e.what()));
        }
    }
    void cancel(const std::string& requester) override { requesters_.at(requester).sub.release(); }
    void request(const std::string& requester, const std::string& queue, const std::string& body,
                 const std::string& reply_to) override {
        sent(reply_to);
        warren::message m{.routing_key = queue, .body = body};
        m.properties.reply_to = reply_to;
        try {
            (void)broker_.publish("", std::move(m), {.reply_consumer = requester});
            log.push_back("request " + body + ": ok");
        } catch (const warren::error& e) {
            log.push_back("request " + body + ": " + refusal(static_cast<int>(e.code()), e.what()));
        }
    }
    void take_request(const std::string& queue, const std::string& address) override {
        auto d = broker_.try_get(queue);
        if (!d) {
            log.push_back(queue + " is empty");
            return;
        }
        noted_request(queue, address, d->body(), d->properties().reply_to);
    }
    void reply(const std::string& address, const std::string& body) override {
        (void)broker_.publish("", {.routing_key = address_of(address), .body = body});
    }
    void received(const std::string& requester) override {
        (void)broker_.dispatch();
        auto& state = requesters_[requester];
        std::string line = requester + " received:";
        for (const auto& a : state.arrived) line += " " + a;
        state.arrived.clear();
        log.push_back(line);
    }
    void passive_declare(const std::string& address) override {
        const std::string name = address_of(address);
        // RabbitMQ's passive declare of a missing queue is not_found; has_queue says so.
        log.push_back("declare " + address + ": " + (broker_.has_queue(name) ? "ok" : "404"));
    }
    void get(const std::string& name) override {
        try {
            (void)broker_.try_get(address_of(name));
            log.push_back("get " + name + ": ok");
        } catch (const warren::error& e) {
            log.push_back("get " + name + ": " + refusal(static_cast<int>(e.code()), e.what()));
        }
    }

private:
    struct requester_state {
        warren::subscription sub;
        std::vector<std::string> arrived;
    };
    warren::broker broker_;
    std::map<std::string, requester_state> requesters_;
};

// ---------------------------------------------------------------------------------------
// RabbitMQ's side

class rabbit_side final : public side {
public:
    rabbit_side(const options& opts, std::string prefix)
        : opts_(opts), prefix_(std::move(prefix)), main_(opts.host, opts.port, opts.connect_timeout, false) {}
    ~rabbit_side() override {
        requesters_.clear();
        for (const auto& q : queues_) (void)main_.delete_queue(q);
    }

    void declare_queue(const std::string& name) override {
        if (main_.declare_queue(prefix_ + name, {}) != 0) throw fatal("queue.declare " + name + ": " + main_.last_error());
        queues_.push_back(prefix_ + name);
    }
    void consume(const std::string& requester, bool no_ack) override {
        amqp_client& c = client(requester);
        amqp_basic_consume_t m{};
        m.queue = differential::amqp_arena::bytes(pseudo_queue_text_);
        m.no_ack = no_ack ? 1 : 0;
        // Our own tag, as on warren's side: rpc() releases the consume-ok that carries a
        // generated one.
        const std::string& tag = tags_[requester] = prefix_ + requester;
        m.consumer_tag = differential::amqp_arena::bytes(tag);
        const int code = c.rpc(AMQP_BASIC_CONSUME_METHOD, &m, AMQP_BASIC_CONSUME_OK_METHOD);
        log.push_back("consume " + requester + ": " + (code == 0 ? "ok" : refusal(code, c.last_error())));
    }
    void cancel(const std::string& requester) override {
        amqp_client& c = client(requester);
        amqp_basic_cancel_t m{};
        m.consumer_tag = differential::amqp_arena::bytes(tags_.at(requester));
        if (c.rpc(AMQP_BASIC_CANCEL_METHOD, &m, AMQP_BASIC_CANCEL_OK_METHOD) != 0) throw fatal("basic.cancel refused");
    }
    void request(const std::string& requester, const std::string& queue, const std::string& body,
                 const std::string& reply_to) override {
        sent(reply_to);
        amqp_client& c = client(requester);
        amqp_basic_properties_t props{};
        props._flags = AMQP_BASIC_REPLY_TO_FLAG;
        props.reply_to = differential::amqp_arena::bytes(reply_to);
        (void)c.publish("", prefix_ + queue, false, props, body);
        const int code = c.round_trip(); // a refused publish closes the channel
        log.push_back("request " + body + ": " + (code == 0 ? "ok" : refusal(code, c.last_error())));
    }
    void take_request(const std::string& queue, const std::string& address) override {
        // basic.get through rabbitmq-c's message reader, which keeps reply_to.
        amqp_basic_get_t m{};
        const std::string q = prefix_ + queue;
        m.queue = differential::amqp_arena::bytes(q);
        m.no_ack = 1;
        amqp_connection_state_t conn = main_.connection();
        amqp_method_number_t replies[] = {AMQP_BASIC_GET_OK_METHOD, AMQP_BASIC_GET_EMPTY_METHOD, 0};
        for (int attempt = 0;; ++attempt) {
            const amqp_rpc_reply_t r = amqp_simple_rpc(conn, amqp_client::channel, AMQP_BASIC_GET_METHOD, replies, &m);
            if (r.reply_type != AMQP_RESPONSE_NORMAL) throw fatal("basic.get " + queue + " failed");
            if (r.reply.id == AMQP_BASIC_GET_EMPTY_METHOD) {
                amqp_maybe_release_buffers(conn);
                if (attempt * 10 < opts_.quiet_ms) { // the request may still be on its way
                    std::this_thread::sleep_for(std::chrono::milliseconds(10));
                    continue;
                }
                log.push_back(queue + " is empty");
                return;
            }
            amqp_message_t msg;
            if (amqp_read_message(conn, amqp_client::channel, &msg, 0).reply_type != AMQP_RESPONSE_NORMAL) {
                throw fatal("reading a request failed");
            }
            std::optional<std::string> reply_to;
            if (msg.properties._flags & AMQP_BASIC_REPLY_TO_FLAG) reply_to = differential::text_of(msg.properties.reply_to);
            const std::string body = differential::text_of(msg.body);
            amqp_destroy_message(&msg);
            amqp_maybe_release_buffers(conn);
            noted_request(queue, address, body, reply_to);
            return;
        }
    }
    void reply(const std::string& address, const std::string& body) override {
        amqp_basic_properties_t props{};
        (void)main_.publish("", address_of(address), false, props, body);
        if (main_.round_trip() != 0) throw fatal("reply refused: " + main_.last_error());
    }
    void received(const std::string& requester) override {
        amqp_client& c = client(requester);
        std::string line = requester + " received:";
        for (;;) { // until none arrives for quiet_ms
            amqp_envelope_t envelope;
            timeval timeout{0, opts_.quiet_ms * 1000};
            amqp_maybe_release_buffers(c.connection());
            const amqp_rpc_reply_t r = amqp_consume_message(c.connection(), &envelope, &timeout, 0);
            if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && r.library_error == AMQP_STATUS_TIMEOUT) break;
            if (r.reply_type != AMQP_RESPONSE_NORMAL) throw fatal(requester + ": reading a delivery failed");
            line += " " + differential::text_of(envelope.message.body) + (envelope.redelivered != 0 ? "*" : "") +
                    " from '" + differential::text_of(envelope.exchange) + "' key " +
                    name_of(differential::text_of(envelope.routing_key));
            amqp_destroy_envelope(&envelope);
        }
        log.push_back(line);
    }
    void passive_declare(const std::string& address) override {
        const int code = main_.declare_queue(address_of(address), {}, true);
        log.push_back("declare " + address + ": " + (code == 0 ? "ok" : refusal(code, main_.last_error())));
    }
    void get(const std::string& name) override {
        std::optional<got_message> got;
        const int code = main_.get(address_of(name), true, got);
        log.push_back("get " + name + ": " + (code == 0 ? "ok" : refusal(code, main_.last_error())));
    }

private:
    amqp_client& client(const std::string& requester) {
        auto& c = requesters_[requester];
        if (!c) c = std::make_unique<amqp_client>(opts_.host, opts_.port, opts_.connect_timeout, false);
        return *c;
    }
    const options& opts_;
    std::string prefix_;
    amqp_client main_; // the responder, and the checks
    std::map<std::string, std::unique_ptr<amqp_client>> requesters_;
    std::map<std::string, std::string> tags_;
    std::vector<std::string> queues_;
    const std::string pseudo_queue_text_ = pseudo_queue;
};

// ---------------------------------------------------------------------------------------
// The scenarios

struct scenario {
    const char* title;
    std::function<void(side&)> run;
};

std::vector<scenario> scenarios() {
    return {
        {"a request's reply_to is rewritten, and the reply reaches its requester once",
         [](side& s) {
             s.declare_queue("rpc");
             s.consume("r", true);
             s.request("r", "rpc", "ping");
             s.take_request("rpc", "r1");
             s.reply("r1", "pong");
             s.received("r");
             s.received("r");
         }},
        {"two requesters get their own replies",
         [](side& s) {
             s.declare_queue("rpc");
             s.consume("a", true);
             s.consume("b", true);
             s.request("a", "rpc", "from a");
             s.request("b", "rpc", "from b");
             s.take_request("rpc", "a1");
             s.take_request("rpc", "b1");
             s.reply("b1", "for b");
             s.reply("a1", "for a");
             s.received("a");
             s.received("b");
         }},
        {"a reply to a requester that cancelled is dropped; a new consumer gets a new address",
         [](side& s) {
             s.declare_queue("rpc");
             s.consume("r", true);
             s.request("r", "rpc", "one");
             s.take_request("rpc", "r1");
             s.passive_declare("r1");
             s.cancel("r");
             s.passive_declare("r1");
             s.reply("r1", "dropped");
             s.received("r");
             s.consume("r", true);
             s.request("r", "rpc", "two");
             s.take_request("rpc", "r2");
             s.reply("r1", "still dropped");
             s.reply("r2", "delivered");
             s.received("r");
         }},
        {"a request asking for a direct reply with no reply consumer is refused",
         [](side& s) {
             s.declare_queue("rpc");
             s.request("r", "rpc", "x");
             s.take_request("rpc", "r1");
         }},
        {"a request asking for a direct reply after its consumer cancelled is refused",
         [](side& s) {
             s.declare_queue("rpc");
             s.consume("r", true);
             s.cancel("r");
             s.request("r", "rpc", "x");
             s.take_request("rpc", "r1");
         }},
        {"only reply_to = amq.rabbitmq.reply-to is rewritten",
         [](side& s) {
             s.declare_queue("rpc");
             s.consume("r", true);
             s.request("r", "rpc", "x", "amq.rabbitmq.reply-to.made-up");
             s.take_request("rpc", "r1");
             s.request("r", "rpc", "y", "elsewhere");
             s.take_request("rpc", "r2");
         }},
        {"the pseudo-queue: a passive declare succeeds, a get is not_found, a publish to it reaches no one",
         [](side& s) {
             s.consume("r", true);
             s.passive_declare(pseudo_queue);
             s.passive_declare("amq.rabbitmq.reply-to.made-up");
             s.get(pseudo_queue);
             s.reply(pseudo_queue, "to the name itself");
             s.received("r");
         }},
        {"a reply consumer with manual acks is refused",
         [](side& s) { s.consume("r", false); }},
        {"a second reply consumer on one channel (warren: one consumer tag) is refused",
         [](side& s) {
             s.consume("r", true);
             s.consume("r", true);
         }},
    };
}

constexpr const char* usage_text =
    "usage: reply_to_differential [--host H] [--port P] [--connect-timeout S] [--quiet-ms MS] [--verbose]\n"
    "Runs each direct reply-to scenario on warren and on the RabbitMQ at H:P and compares\n"
    "what they observe. Exit status: 0 all agree, 1 a disagreement, 2 usage, 3 other failure.\n";

} // namespace

int main(int argc, char** argv) {
    return differential::run_scenarios<warren_side, rabbit_side>(
        "reply_to_differential", "wr", usage_text, scenarios(), argc, argv);
}
