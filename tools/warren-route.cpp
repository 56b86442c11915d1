// warren-route(1) - replay a topology and report where each message goes
//
// SYNOPSIS
//     warren-route [--queues] [--bench] [--no-cache] TOPOLOGY_FILE < MESSAGES
//     warren-route --help
//
// DESCRIPTION
//     Declares the exchanges, queues and bindings of TOPOLOGY_FILE in a warren::broker,
//     then publishes each message read from standard input and prints, one line per
//     message and in input order, the queues its exchanges routed it to. Routing is
//     warren's, which is RabbitMQ's: every exchange type, exchange-to-exchange bindings,
//     alternate and internal exchanges, the default exchange. With --queues it then prints
//     what each queue holds, after its arguments (length limits, overflow, dead-lettering,
//     priorities, TTLs) have acted as RabbitMQ's would.
//
// TOPOLOGY_FILE
//     One declaration per line. Fields are separated by exactly one TAB; an empty field
//     is the empty string (so `bind<TAB>q<TAB>logs<TAB>` binds with the empty key).
//     Lines starting with `#` are comments; empty lines are ignored. Lines end at LF or
//     CRLF (the CR is not part of the last field). A line holds at most 4,096 fields and
//     1 MiB (1,048,576 bytes); a longer one is an error (exit status 2). The same holds
//     for MESSAGES.
//
//         exchange <name> <fanout|direct|topic|headers> [alternate-exchange=<name>] [internal]
//         queue <name> [<x-arg>=<value> ...]
//         bind <queue> <exchange> <binding-key> [<arg>=<value> ...]
//         bind-exchange <destination> <source> <binding-key> [<arg>=<value> ...]
//
//     Queue arguments are typed as RabbitMQ wants them: x-max-length, x-max-length-bytes,
//     x-max-priority, x-message-ttl and x-expires are integers (any other value is a usage
//     error), x-single-active-consumer is `true` or `false`, and every other argument
//     (x-overflow, x-dead-letter-exchange, x-dead-letter-routing-key, and arguments RabbitMQ
//     does not know, which it keeps) is a string. Binding arguments are string-valued; for
//     a headers exchange they are the match table (`x-match=any`, `format=pdf`). The
//     predeclared exchanges (amq.direct, amq.fanout, amq.topic, amq.headers, amq.match)
//     exist from the start. A queue name must not be empty (a server-named queue could
//     not be bound by name).
//
// MESSAGES
//     One message per line: `<exchange> TAB <routing-key> [TAB <field>=<value> ...]`.
//     An empty exchange is the default exchange. A field named `@<property>` sets a
//     property: @priority and @delivery_mode (0 to 255), @timestamp (unsigned), or the
//     strings @content_type, @content_encoding, @correlation_id, @reply_to, @expiration,
//     @message_id, @type, @user_id and @app_id; any other field is a string header.
//     Message i (counting from 0 the non-empty lines) has the body i in decimal. Empty
//     lines are skipped (they print nothing). `#` is not special here: it may start an
//     exchange name.
//
// OUTPUT
//     One line per message: the names of the queues its exchanges routed it to, sorted by
//     byte value and separated by one space; an empty line when they routed it nowhere; or
//     `!` and the AMQP reply name (`!NOT_FOUND`, `!ACCESS_REFUSED`, `!PRECONDITION_FAILED`)
//     when the broker refuses the publish. What a queue then does with the message (refuse
//     it at its length limit, drop it, dead-letter it, let it expire) does not change the
//     line. Lines come out in batches; when input arrives slowly (a terminal, a slow pipe)
//     each line is answered as soon as it is read.
//
//     With --queues, after the last message line: one line per queue, in declaration
//     order, `<name> TAB <indices>`: the messages the queue holds once every message is
//     published, in the order a consumer receives them, as their indices separated by one
//     space (nothing after the TAB for an empty queue). Queues are drained one after the
//     other in that order. No time passes during a run: a message whose TTL is 0
//     expires, no other does.
//
// OPTIONS
//     --queues    Print what each queue holds at the end, as above.
//     --bench     Read every message first, print the output above once, then publish
//                 the messages over and over (cycling through them) for at least one
//                 second and print as the last line
//                 `messages=<n> ns_per_message=<x> cache_hit_rate=<r>`:
//                 n publishes timed, x the mean nanoseconds inside broker.publish() per
//                 message (exchange lookup, routing, and enqueueing one shared copy on
//                 each destination queue, with what its arguments do; refusals included),
//                 r the share of the timed routes through topic exchanges that the
//                 routing cache answered (three decimals; `off` with --no-cache, `n/a`
//                 when no message went through a topic exchange).
//                 Building the messages and purging the queues, done between timed
//                 chunks of 4096, are not timed.
//     --no-cache  Turn the topic routing cache off (broker.set_routing_cache_capacity(0)).
//                 It is on by default, remembering basic_broker::default_routing_cache_capacity
//                 keys per topic exchange; --bench cycles through the same messages, so
//                 with it on, topic routes of up to that many distinct keys are cache hits.
//                 Output never depends on it.
//     --help      Print usage and exit.
//
// EXIT STATUS
//     0 success; 1 the topology file cannot be read; 2 a usage error, a malformed or
//     refused topology line (reported on stderr as FILE:LINE: reason), or a malformed
//     message line (reported as <stdin>:LINE: reason, after the lines before it; the
//     --queues report is then not printed). A line over the limits above is malformed.
//     Names in reasons are quoted with control characters made visible ('q\r').
//
// EXAMPLE
//     $ printf 'exchange\tlogs\ttopic\nqueue\tq\tx-max-length=1\nbind\tq\tlogs\tkern.*\n' > topology
//     $ printf 'logs\tkern.disk\nlogs\tuser.login\nnope\tx\nlogs\tkern.cpu\n' | warren-route --queues topology
//     q
//
//     !NOT_FOUND
//     q
//     q<TAB>3
//
// See docs/warren-route.md.

#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <warren/broker.hpp>
#include <warren/clock.hpp>
#include <warren/error.hpp>
#include <warren/field_table.hpp>
#include <warren/message.hpp>
#include <warren/properties.hpp>
#include <warren/queue.hpp>

namespace {

constexpr int exit_ok = 0;
constexpr int exit_failure = 1;
constexpr int exit_bad_input = 2;

constexpr std::string_view usage = R"(usage: warren-route [--queues] [--bench] [--no-cache] TOPOLOGY_FILE < MESSAGES

Declares the topology in a warren broker, publishes each message of standard input and
prints, per message, the queues its exchanges routed it to (sorted, space-separated), an
empty line if none, or !REPLY_NAME (e.g. !NOT_FOUND, !ACCESS_REFUSED) if the publish is
refused. Message i (from 0) has the body i.

TOPOLOGY_FILE, one declaration per line, fields separated by one TAB, '#' comments:
  exchange <name> <fanout|direct|topic|headers> [alternate-exchange=<name>] [internal]
  queue <name> [<x-arg>=<value> ...]
  bind <queue> <exchange> <binding-key> [<arg>=<value> ...]
  bind-exchange <destination> <source> <binding-key> [<arg>=<value> ...]
  (x-max-length, x-max-length-bytes, x-max-priority, x-message-ttl, x-expires are
  integers, x-single-active-consumer is true or false, other arguments are strings)
  Lines end at LF or CRLF, and hold at most 4096 fields and 1 MiB.

MESSAGES, one per line: <exchange> TAB <routing-key> [TAB <field>=<value> ...]
  (an empty exchange is the default exchange; a field is a header, or a property if
  its name starts with @: @priority=3, @expiration=1000, @content_type=text/plain, ...)

options:
  --queues    then print one line per queue, in declaration order: its name, a TAB,
              and the messages it holds in the order a consumer gets them
  --bench     after the output above, publish the messages over and over for at least
              one second; the last line is:
              messages=<n> ns_per_message=<x> cache_hit_rate=<r>
              (r: share of topic routes the routing cache answered; off, or n/a
              when no message went through a topic exchange)
  --no-cache  turn the topic routing cache off (output is the same; --bench shows
              the cost of routing without it)
  --help      print this help

exit status: 0 ok, 1 topology file unreadable, 2 usage error or malformed input
(reported on stderr with its line number).
)";

/// A malformed input line; the caller adds where it was.
struct input_error {
    std::string reason;
};

/// A name as the broker quotes it in errors: control characters made visible ('q\r').
std::string quoted(std::string_view s) { return warren::detail::quoted(s); }

/// The most bytes and fields a line may hold (documented in the file comment and usage).
constexpr std::size_t max_line_bytes = std::size_t{1} << 20;
constexpr std::size_t max_fields = 4096;

/// What read_line found.
enum class line_status : std::uint8_t { line, end, too_long };

/// Reads the next line of `in` into `line`, without its LF or CRLF. Stops reading at
/// max_line_bytes, so a hostile input cannot make the tool hold an endless line.
line_status read_line(std::istream& in, std::string& line) {
    using traits = std::char_traits<char>;
    line.clear();
    std::streambuf* buffer = in.rdbuf();
    for (;;) {
        const traits::int_type c = buffer->sbumpc();
        if (traits::eq_int_type(c, traits::eof())) {
            in.setstate(std::ios::eofbit);
            if (line.empty()) return line_status::end;
            break; // a last line without LF
        }
        if (traits::to_char_type(c) == '\n') break;
        if (line.size() == max_line_bytes) return line_status::too_long;
        line.push_back(traits::to_char_type(c));
    }
    if (!line.empty() && line.back() == '\r') line.pop_back();
    return line_status::line;
}

/// Splits on every TAB: "a\t\tb" is three fields, the middle one empty. A line with
/// more than max_fields fields is malformed.
std::vector<std::string_view> split_fields(std::string_view line) {
    std::vector<std::string_view> fields;
    for (;;) {
        const std::size_t tab = line.find('\t');
        fields.push_back(line.substr(0, tab));
        if (tab == std::string_view::npos) break;
        line.remove_prefix(tab + 1);
    }
    if (fields.size() > max_fields) {
        throw input_error{"line has " + std::to_string(fields.size()) + " fields; the limit is " + std::to_string(max_fields)};
    }
    return fields;
}

/// `name=value`, split at the first `=` (so values may hold `=`).
std::pair<std::string_view, std::string_view> split_assignment(std::string_view field, std::string_view what) {
    const std::size_t eq = field.find('=');
    if (eq == std::string_view::npos) throw input_error{std::string(what) + " " + quoted(field) + " is not <name>=<value>"};
    return {field.substr(0, eq), field.substr(eq + 1)};
}

/// `text` as a decimal T if all of it is one that T holds (no sign for unsigned T, no `+`).
template <class T>
std::optional<T> parse_integer(std::string_view text) {
    T value{};
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc{} || end != text.data() + text.size()) return std::nullopt;
    return value;
}

/// String-valued fields from `name=value` fields; a repeated name keeps the last value.
warren::field_table parse_table(const std::vector<std::string_view>& fields, std::size_t first, std::string_view what) {
    std::vector<warren::field_entry> entries;
    for (std::size_t i = first; i < fields.size(); ++i) {
        const auto [name, value] = split_assignment(fields[i], what);
        entries.push_back({std::string(name), std::string(value)});
    }
    return warren::field_table(std::move(entries)); // sorted once: O(n log n)
}

/// The queue arguments RabbitMQ wants as integers or booleans: a string "10" would not be
/// read as a number but refused, so the tool types these.
constexpr std::string_view integer_queue_arguments[] = {"x-max-length", "x-max-length-bytes", "x-max-priority",
                                                        "x-message-ttl", "x-expires"};
constexpr std::string_view boolean_queue_arguments[] = {"x-single-active-consumer"};

template <std::size_t N>
bool is_one_of(std::string_view name, const std::string_view (&names)[N]) {
    for (std::string_view n : names) {
        if (n == name) return true;
    }
    return false;
}

/// One queue argument, typed as RabbitMQ wants it. Values the broker refuses (a negative
/// length, an unknown x-overflow) are left to it, so its own words report them.
warren::field_value queue_argument(std::string_view name, std::string_view text) {
    if (is_one_of(name, integer_queue_arguments)) {
        if (const auto n = parse_integer<std::int64_t>(text)) return *n;
        throw input_error{"queue argument " + quoted(name) + " must be an integer, not " + quoted(text)};
    }
    if (is_one_of(name, boolean_queue_arguments)) {
        if (text == "true") return true;
        if (text == "false") return false;
        throw input_error{"queue argument " + quoted(name) + " must be true or false, not " + quoted(text)};
    }
    // RabbitMQ keeps arguments it does not know (and ignores them), so the tool passes them on.
    return std::string(text);
}

/// Queue arguments from `name=value` fields; a repeated name keeps the last value.
warren::field_table parse_queue_arguments(const std::vector<std::string_view>& fields, std::size_t first) {
    std::vector<warren::field_entry> entries;
    for (std::size_t i = first; i < fields.size(); ++i) {
        const auto [name, value] = split_assignment(fields[i], "queue argument");
        entries.push_back({std::string(name), queue_argument(name, value)});
    }
    return warren::field_table(std::move(entries));
}

void require_fields(const std::vector<std::string_view>& fields, std::size_t n, std::string_view syntax) {
    if (fields.size() < n) throw input_error{"missing fields; expected " + std::string(syntax)};
}

/// The two brokers a run declares the topology in.
///
/// `topology` is the topology as written: its queues keep, drop, refuse, dead-letter and
/// expire messages as their arguments say, and --queues reports what they hold. `routes`
/// has the same exchanges, bindings and queues, but no queue arguments, and gets each
/// message without the properties queues act on, so its queues keep every message routed
/// to them: draining them tells where the exchanges sent each message, whatever the
/// queues of `topology` did with it, and leaves those untouched.
struct brokers {
    // Never advanced: no time passes during a run, so which messages expire depends
    // neither on how fast the tool runs nor on how slowly its input arrives.
    warren::manual_clock clock;
    warren::broker topology{clock};
    warren::broker routes;

    /// Runs `step` on both brokers; a refusal by `topology` stops it there.
    template <class F>
    void declare(F step) {
        step(topology);
        step(routes);
    }
};

/// The queues a topology declares, each once.
struct queue_names {
    std::vector<std::string> in_declaration_order;
    std::set<std::string> sorted; // by byte value

    void add(std::string name) {
        if (sorted.insert(name).second) in_declaration_order.push_back(std::move(name));
    }
};

warren::exchange_options parse_exchange_options(const std::vector<std::string_view>& f, std::string_view syntax) {
    warren::exchange_options options;
    bool alternate = false;
    for (std::size_t i = 3; i < f.size(); ++i) {
        if (f[i] == "internal" && !options.internal) {
            options.internal = true;
        } else if (f[i].starts_with("alternate-exchange=") && !alternate) {
            alternate = true;
            options.arguments = {{"alternate-exchange", std::string(f[i].substr(f[i].find('=') + 1))}};
        } else {
            throw input_error{"unexpected or repeated exchange option " + quoted(f[i]) + "; expected " +
                              std::string(syntax)};
        }
    }
    return options;
}

/// Applies one topology line to both brokers; records declared queue names in `queues`.
/// Throws input_error for a malformed line and warren::error for a refused one.
void apply_declaration(brokers& b, const std::vector<std::string_view>& f, queue_names& queues) {
    const std::string_view directive = f[0];
    if (directive == "exchange") {
        static constexpr std::string_view syntax =
            "exchange <name> <type> [alternate-exchange=<name>] [internal]";
        require_fields(f, 3, syntax);
        const warren::exchange_options options = parse_exchange_options(f, syntax);
        b.declare([&](warren::broker& broker) { broker.declare_exchange(f[1], f[2], options); });
    } else if (directive == "queue") {
        require_fields(f, 2, "queue <name> [<x-arg>=<value> ...]");
        // An empty name asks the broker for a generated one, which no later line could name.
        if (f[1].empty()) throw input_error{"empty queue name"};
        warren::queue_options options;
        options.arguments = parse_queue_arguments(f, 2);
        queues.add(b.topology.declare_queue(f[1], options));
        (void)b.routes.declare_queue(f[1]);
    } else if (directive == "bind") {
        require_fields(f, 4, "bind <queue> <exchange> <binding-key> [<arg>=<value> ...]");
        const warren::field_table arguments = parse_table(f, 4, "binding argument");
        b.declare([&](warren::broker& broker) { broker.bind_queue(f[1], f[2], f[3], arguments); });
    } else if (directive == "bind-exchange") {
        require_fields(f, 4, "bind-exchange <destination> <source> <binding-key> [<arg>=<value> ...]");
        const warren::field_table arguments = parse_table(f, 4, "binding argument");
        b.declare([&](warren::broker& broker) { broker.bind_exchange(f[1], f[2], f[3], arguments); });
    } else {
        throw input_error{"unknown directive " + quoted(directive) +
                          "; expected exchange, queue, bind or bind-exchange"};
    }
}

/// Loads TOPOLOGY_FILE into both brokers. Returns the exit status to stop with, or -1 to go on.
int load_topology(const char* path, brokers& b, queue_names& queues) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        std::cerr << "warren-route: cannot open " << path << '\n';
        return exit_failure;
    }
    std::string line;
    for (std::size_t number = 1;; ++number) {
        const line_status status = read_line(in, line);
        if (status == line_status::end) break;
        if (status == line_status::too_long) {
            std::cerr << "warren-route: " << path << ':' << number << ": line is longer than " << max_line_bytes
                      << " bytes\n";
            return exit_bad_input;
        }
        if (line.empty() || line.front() == '#') continue;
        try {
            apply_declaration(b, split_fields(line), queues);
        } catch (const input_error& e) {
            std::cerr << "warren-route: " << path << ':' << number << ": " << e.reason << '\n';
            return exit_bad_input;
        } catch (const warren::error& e) {
            std::cerr << "warren-route: " << path << ':' << number << ": " << e.what() << '\n';
            return exit_bad_input;
        }
    }
    if (in.bad()) {
        std::cerr << "warren-route: cannot read " << path << '\n';
        return exit_failure;
    }
    return -1;
}

/// The string-valued properties, by the name a message field gives them after its `@`.
constexpr std::pair<std::string_view, std::optional<std::string> warren::properties::*> string_properties[] = {
    {"content_type", &warren::properties::content_type},
    {"content_encoding", &warren::properties::content_encoding},
    {"correlation_id", &warren::properties::correlation_id},
    {"reply_to", &warren::properties::reply_to},
    {"expiration", &warren::properties::expiration},
    {"message_id", &warren::properties::message_id},
    {"type", &warren::properties::type},
    {"user_id", &warren::properties::user_id},
    {"app_id", &warren::properties::app_id},
};

/// An AMQP octet property (@priority, @delivery_mode): 0 to 255.
std::uint8_t octet_property(std::string_view name, std::string_view text) {
    if (const auto n = parse_integer<std::uint8_t>(text)) return *n;
    throw input_error{"property '@" + std::string(name) + "' must be an integer from 0 to 255, not " + quoted(text)};
}

/// Sets the property `name` (what follows the `@`) to `text`. Values the broker refuses
/// (an @expiration that is not a number) are left to it: they refuse that publish only.
void set_property(warren::properties& p, std::string_view name, std::string_view text) {
    for (const auto& [property, member] : string_properties) {
        if (property == name) {
            p.*member = std::string(text);
            return;
        }
    }
    if (name == "priority") {
        p.priority = octet_property(name, text);
    } else if (name == "delivery_mode") {
        p.delivery_mode = octet_property(name, text);
    } else if (name == "timestamp") {
        const auto seconds = parse_integer<std::uint64_t>(text);
        if (!seconds) throw input_error{"property '@timestamp' must be an unsigned integer, not " + quoted(text)};
        p.timestamp = *seconds;
    } else {
        throw input_error{"unknown property '@" + std::string(name) +
                          "'; expected @content_type, @content_encoding, @delivery_mode, @priority, "
                          "@correlation_id, @reply_to, @expiration, @message_id, @timestamp, @type, "
                          "@user_id or @app_id"};
    }
}

struct message_spec {
    std::string exchange;
    warren::message message;
};

message_spec parse_message(std::string_view line) {
    const auto f = split_fields(line);
    if (f.size() < 2) throw input_error{"missing fields; expected <exchange> TAB <routing-key> [TAB <field>=<value> ...]"};
    message_spec spec{std::string(f[0]), {}};
    spec.message.routing_key = std::string(f[1]);
    std::vector<warren::field_entry> headers;
    for (std::size_t i = 2; i < f.size(); ++i) {
        const bool property = f[i].starts_with('@');
        const auto [name, value] = split_assignment(f[i], property ? "property" : "header");
        if (property) {
            set_property(spec.message.properties, name.substr(1), value);
        } else {
            headers.push_back({std::string(name), std::string(value)});
        }
    }
    spec.message.properties.headers = warren::field_table(std::move(headers)); // a repeated name: the last wins
    return spec;
}

/// What the routing twin needs of a message: what exchanges route by, and the body that
/// names it. Properties are left behind, so that no queue there can expire it.
warren::message routing_copy(const warren::message& msg) {
    warren::message copy;
    copy.routing_key = msg.routing_key;
    copy.body = msg.body;
    copy.properties.headers = msg.properties.headers;
    return copy;
}

/// Publishes messages and finds out where the exchanges sent each one.
///
/// Each message goes to the topology's broker and, unless that refuses it, to the routing
/// twin (see `brokers`). The broker says only how many queues took a message, so each
/// message's body is its index; flush() drains every twin queue, in name order, and so
/// learns each message's queues already sorted. That costs one pass over the queues per
/// batch, not per message.
class router {
public:
    /// With `keep_messages` the topology's queues keep what they hold for --queues;
    /// without, flush() purges them, so that memory does not grow with the input.
    router(brokers& b, const queue_names& queues, bool keep_messages)
        : brokers_(b), queues_(queues.sorted.begin(), queues.sorted.end()), keep_messages_(keep_messages) {}

    static constexpr std::size_t batch_size = 4096;

    void publish(std::string_view exchange, warren::message msg) {
        msg.body = std::to_string(first_ + results_.size());
        results_.emplace_back();
        warren::message copy = routing_copy(msg);
        try {
            (void)brokers_.topology.publish(exchange, std::move(msg));
            (void)brokers_.routes.publish(exchange, std::move(copy));
        } catch (const warren::error& e) {
            results_.back() = '!';
            results_.back() += e.name();
        }
    }

    [[nodiscard]] bool full() const noexcept { return results_.size() >= batch_size; }

    /// Prints one line per message published since the last flush.
    void flush(std::ostream& out) {
        if (results_.empty()) return;
        for (const std::string& queue : queues_) {
            while (auto delivery = brokers_.routes.try_get(queue)) {
                const std::string& body = delivery->body();
                std::size_t index = 0;
                (void)std::from_chars(body.data(), body.data() + body.size(), index);
                std::string& line = results_[index - first_];
                if (!line.empty()) line += ' ';
                line += queue;
            }
            if (!keep_messages_) (void)brokers_.topology.purge_queue(queue);
        }
        for (const std::string& line : results_) out << line << '\n';
        out.flush();
        first_ += results_.size();
        results_.clear();
    }

private:
    brokers& brokers_;
    std::vector<std::string> queues_; // sorted by byte value
    bool keep_messages_;
    std::size_t first_ = 0; // index of the batch's first message
    std::vector<std::string> results_;
};

/// --queues: prints `name TAB indices` per queue in declaration order, the indices in the
/// order a consumer receives the messages. Drains the queues, one after the other, so a
/// message that expires on reaching the head of one is dead-lettered only then.
void print_queue_contents(warren::broker& broker, const queue_names& queues, std::ostream& out) {
    // Every head due to expire (a TTL of 0) goes first, in every queue, so what a
    // dead-letter queue holds does not depend on whether it is read before its source.
    (void)broker.expire();
    for (const std::string& queue : queues.in_declaration_order) {
        out << queue << '\t';
        const char* separator = "";
        while (auto delivery = broker.try_get(queue)) {
            out << separator << delivery->body(); // the body is the message's index
            separator = " ";
        }
        out << '\n';
    }
    out.flush();
}

/// Whether the next read of `in` would find data without waiting. libstdc++ asks the OS
/// (FIONREAD); where it cannot tell, the answer is "no", which costs only a smaller batch.
bool more_input_ready(std::istream& in) { return in.rdbuf()->in_avail() > 0; }

/// Reports a message line over the limits, after answering the lines before it.
int refuse_long_line(router& r, std::size_t number, std::ostream& out) {
    r.flush(out);
    std::cerr << "warren-route: <stdin>:" << number << ": line is longer than " << max_line_bytes << " bytes\n";
    return exit_bad_input;
}

int route_stream(router& r, std::istream& in, std::ostream& out) {
    std::string line;
    for (std::size_t number = 1;; ++number) {
        const line_status status = read_line(in, line);
        if (status == line_status::end) break;
        if (status == line_status::too_long) return refuse_long_line(r, number, out);
        if (!line.empty()) {
            try {
                message_spec spec = parse_message(line);
                r.publish(spec.exchange, std::move(spec.message));
            } catch (const input_error& e) {
                r.flush(out);
                std::cerr << "warren-route: <stdin>:" << number << ": " << e.reason << '\n';
                return exit_bad_input;
            }
        }
        // Answer before blocking on more input, so an interactive user sees each line.
        if (r.full() || !more_input_ready(in)) r.flush(out);
    }
    r.flush(out);
    return exit_ok;
}

/// The cache's share of the timed topic routes: `cache_hit_rate=` its hits per route
/// (three decimals), `off` with --no-cache, `n/a` when no message went through a topic
/// exchange.
std::string cache_hit_rate(const warren::topic_cache_stats& before, const warren::topic_cache_stats& after,
                           bool cache_on) {
    if (!cache_on) return "off";
    warren::topic_cache_stats timed;
    timed.lookups = after.lookups - before.lookups;
    timed.hits = after.hits - before.hits;
    timed.bypassed = after.bypassed - before.bypassed;
    if (timed.lookups + timed.bypassed == 0) return "n/a";
    std::ostringstream rate;
    rate << std::fixed << std::setprecision(3) << timed.hit_rate();
    return rate.str();
}

/// Publishes `messages` over and over for at least `minimum` of timed publishing; prints
/// `messages=<n> ns_per_message=<x> cache_hit_rate=<r>`. See the file comment for what is
/// timed.
void bench(warren::broker& broker, const queue_names& queues, const std::vector<message_spec>& messages,
           bool cache_on, std::ostream& out) {
    const warren::topic_cache_stats cache_before = broker.routing_cache_stats();
    using clock = std::chrono::steady_clock;
    constexpr std::chrono::seconds minimum{1};
    constexpr std::size_t chunk = 4096;
    std::uint64_t published = 0;
    clock::duration timed{};
    if (!messages.empty()) {
        std::vector<warren::message> batch;
        std::vector<const std::string*> exchanges;
        batch.reserve(chunk);
        exchanges.reserve(chunk);
        std::size_t next = 0;
        while (timed < minimum) {
            // Copies are made untimed; the timed loop moves them into the broker.
            batch.clear();
            exchanges.clear();
            for (std::size_t i = 0; i < chunk; ++i) {
                batch.push_back(messages[next].message);
                exchanges.push_back(&messages[next].exchange);
                next = next + 1 == messages.size() ? 0 : next + 1;
            }
            const auto start = clock::now();
            for (std::size_t i = 0; i < chunk; ++i) {
                try {
                    (void)broker.publish(*exchanges[i], std::move(batch[i]));
                } catch (const warren::error&) { // a refusal is timed like any publish
                }
            }
            timed += clock::now() - start;
            published += chunk;
            for (const std::string& queue : queues.in_declaration_order) (void)broker.purge_queue(queue);
        }
    }
    const double ns = published == 0 ? 0.0
                                     : static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(timed).count()) /
                                           static_cast<double>(published);
    out << "messages=" << published << " ns_per_message=" << std::fixed << std::setprecision(1) << ns
        << " cache_hit_rate=" << cache_hit_rate(cache_before, broker.routing_cache_stats(), cache_on) << '\n';
}

/// --bench: reads every message first, so reading input is never timed; prints the output
/// once, then times publishing.
int run_bench(router& r, brokers& b, const queue_names& queues, bool show_queues, bool cache_on) {
    std::vector<message_spec> messages;
    std::string line;
    for (std::size_t number = 1;; ++number) {
        const line_status status = read_line(std::cin, line);
        if (status == line_status::end) break;
        if (status == line_status::too_long) return refuse_long_line(r, number, std::cout);
        if (line.empty()) continue;
        try {
            messages.push_back(parse_message(line));
        } catch (const input_error& e) {
            std::cerr << "warren-route: <stdin>:" << number << ": " << e.reason << '\n';
            return exit_bad_input;
        }
        // The body the router gives it, so the timed publishes are the same messages.
        messages.back().message.body = std::to_string(messages.size() - 1);
    }
    for (const message_spec& spec : messages) {
        r.publish(spec.exchange, spec.message);
        if (r.full()) r.flush(std::cout);
    }
    r.flush(std::cout);
    if (show_queues) print_queue_contents(b.topology, queues, std::cout);
    bench(b.topology, queues, messages, cache_on, std::cout);
    return exit_ok;
}

int run(int argc, char** argv) {
    bool bench_mode = false;
    bool no_cache = false;
    bool show_queues = false;
    const char* topology = nullptr;
    bool options_done = false;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (!options_done && (arg == "--help" || arg == "-h")) {
            std::cout << usage;
            return exit_ok;
        }
        if (!options_done && arg == "--bench") {
            bench_mode = true;
        } else if (!options_done && arg == "--no-cache") {
            no_cache = true;
        } else if (!options_done && arg == "--queues") {
            show_queues = true;
        } else if (!options_done && arg == "--") {
            options_done = true;
        } else if (!options_done && arg.size() > 1 && arg.front() == '-') {
            std::cerr << "warren-route: unknown option " << arg << "\n\n" << usage;
            return exit_bad_input;
        } else if (topology == nullptr) {
            topology = argv[i];
        } else {
            std::cerr << "warren-route: one TOPOLOGY_FILE expected\n\n" << usage;
            return exit_bad_input;
        }
    }
    if (topology == nullptr) {
        std::cerr << "warren-route: missing TOPOLOGY_FILE\n\n" << usage;
        return exit_bad_input;
    }

    brokers b;
    if (no_cache) { // covers exchanges declared later too
        b.topology.set_routing_cache_capacity(0);
        b.routes.set_routing_cache_capacity(0);
    }
    queue_names queues;
    if (const int status = load_topology(topology, b, queues); status >= 0) return status;
    router r(b, queues, show_queues);

    if (bench_mode) return run_bench(r, b, queues, show_queues, !no_cache);
    const int status = route_stream(r, std::cin, std::cout);
    if (status == exit_ok && show_queues) print_queue_contents(b.topology, queues, std::cout);
    return status;
}

} // namespace

int main(int argc, char** argv) {
    // Unsynchronised streams are buffered, which makes reading and writing fast and lets
    // more_input_ready() see what is waiting.
    std::ios::sync_with_stdio(false);
    try {
        return run(argc, argv);
    } catch (const std::exception& e) {
        std::cerr << "warren-route: " << e.what() << '\n';
        return exit_failure;
    }
}
