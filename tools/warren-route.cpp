// warren-route(1) - replay a topology and report where each message goes
//
// SYNOPSIS
//     warren-route [--bench] [--no-cache] TOPOLOGY_FILE < MESSAGES
//     warren-route --help
//
// DESCRIPTION
//     Declares the exchanges, queues and bindings of TOPOLOGY_FILE in a warren::broker,
//     then publishes each message read from standard input and prints, one line per
//     message and in input order, the queues that got it. Routing is warren's, which is
//     RabbitMQ's: every exchange type, exchange-to-exchange bindings, alternate and
//     internal exchanges, the default exchange.
//
// TOPOLOGY_FILE
//     One declaration per line. Fields are separated by exactly one TAB; an empty field
//     is the empty string (so `bind<TAB>q<TAB>logs<TAB>` binds with the empty key).
//     Lines starting with `#` are comments; empty lines are ignored.
//
//         exchange <name> <fanout|direct|topic|headers> [alternate-exchange=<name>] [internal]
//         queue <name>
//         bind <queue> <exchange> <binding-key> [<arg>=<value> ...]
//         bind-exchange <destination> <source> <binding-key> [<arg>=<value> ...]
//
//     Binding arguments are string-valued; for a headers exchange they are the match
//     table (`x-match=any`, `format=pdf`). The predeclared exchanges (amq.direct,
//     amq.fanout, amq.topic, amq.headers, amq.match) exist from the start. A queue name
//     must not be empty (a server-named queue could not be bound by name).
//
// MESSAGES
//     One message per line: `<exchange> TAB <routing-key> [TAB <header>=<value> ...]`.
//     An empty exchange is the default exchange; header values are strings. Empty lines
//     are skipped (they print nothing). `#` is not special here: it may start an
//     exchange name.
//
// OUTPUT
//     One line per message: the names of the queues that got it, sorted by byte value and
//     separated by one space; an empty line when no queue got it; or `!` and the AMQP
//     reply name (`!NOT_FOUND`, `!ACCESS_REFUSED`, `!PRECONDITION_FAILED`) when the
//     broker refuses the publish. Lines come out in batches; when input arrives slowly
//     (a terminal, a slow pipe) each line is answered as soon as it is read.
//
// OPTIONS
//     --bench     Read every message first, print the output above once, then publish
//                 the messages over and over (cycling through them) for at least one
//                 second and print as the last line `messages=<n> ns_per_message=<x>`:
//                 n publishes timed, x the mean nanoseconds inside broker.publish() per
//                 message (exchange lookup, routing, and enqueueing one shared copy on
//                 each destination queue; refusals included). Building the messages and
//                 purging the queues, done between timed chunks of 4096, are not timed.
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
//     message line (reported as <stdin>:LINE: reason, after the lines before it).
//
// EXAMPLE
//     $ printf 'exchange\tlogs\ttopic\nqueue\tq\nbind\tq\tlogs\tkern.*\n' > topology
//     $ printf 'logs\tkern.disk\nlogs\tuser.login\nnope\tx\n' | warren-route topology
//     q
//
//     !NOT_FOUND
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
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <warren/broker.hpp>
#include <warren/error.hpp>
#include <warren/field_table.hpp>
#include <warren/message.hpp>

namespace {

constexpr int exit_ok = 0;
constexpr int exit_failure = 1;
constexpr int exit_bad_input = 2;

constexpr std::string_view usage = R"(usage: warren-route [--bench] [--no-cache] TOPOLOGY_FILE < MESSAGES

Declares the topology in a warren broker, publishes each message of standard input and
prints, per message, the queues that got it (sorted, space-separated), an empty line if
none did, or !REPLY_NAME (e.g. !NOT_FOUND, !ACCESS_REFUSED) if the publish is refused.

TOPOLOGY_FILE, one declaration per line, fields separated by one TAB, '#' comments:
  exchange <name> <fanout|direct|topic|headers> [alternate-exchange=<name>] [internal]
  queue <name>
  bind <queue> <exchange> <binding-key> [<arg>=<value> ...]
  bind-exchange <destination> <source> <binding-key> [<arg>=<value> ...]

MESSAGES, one per line: <exchange> TAB <routing-key> [TAB <header>=<value> ...]
  (an empty exchange is the default exchange)

options:
  --bench     after the output above, publish the messages over and over for at least
              one second; the last line is: messages=<n> ns_per_message=<x>
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

std::string quoted(std::string_view s) { return "'" + std::string(s) + "'"; }

/// Splits on every TAB: "a\t\tb" is three fields, the middle one empty.
std::vector<std::string_view> split_fields(std::string_view line) {
    std::vector<std::string_view> fields;
    for (;;) {
        const std::size_t tab = line.find('\t');
        fields.push_back(line.substr(0, tab));
        if (tab == std::string_view::npos) return fields;
        line.remove_prefix(tab + 1);
    }
}

/// `name=value`, split at the first `=` (so values may hold `=`).
std::pair<std::string_view, std::string_view> split_assignment(std::string_view field, std::string_view what) {
    const std::size_t eq = field.find('=');
    if (eq == std::string_view::npos) throw input_error{std::string(what) + " " + quoted(field) + " is not <name>=<value>"};
    return {field.substr(0, eq), field.substr(eq + 1)};
}

/// String-valued fields from `name=value` fields; a repeated name keeps the last value.
warren::field_table parse_table(const std::vector<std::string_view>& fields, std::size_t first, std::string_view what) {
    warren::field_table table;
    for (std::size_t i = first; i < fields.size(); ++i) {
        const auto [name, value] = split_assignment(fields[i], what);
        table.set(name, std::string(value));
    }
    return table;
}

void require_fields(const std::vector<std::string_view>& fields, std::size_t n, std::string_view syntax) {
    if (fields.size() < n) throw input_error{"missing fields; expected " + std::string(syntax)};
}

/// Applies one topology line to `broker`; records declared queue names in `queues`.
/// Throws input_error for a malformed line and warren::error for a refused one.
void apply_declaration(warren::broker& broker, const std::vector<std::string_view>& f, std::set<std::string>& queues) {
    const std::string_view directive = f[0];
    if (directive == "exchange") {
        static constexpr std::string_view syntax =
            "exchange <name> <type> [alternate-exchange=<name>] [internal]";
        require_fields(f, 3, syntax);
        warren::exchange_options options;
        bool alternate = false;
        for (std::size_t i = 3; i < f.size(); ++i) {
            if (f[i] == "internal" && !options.internal) {
                options.internal = true;
            } else if (f[i].starts_with("alternate-exchange=") && !alternate) {
                alternate = true;
                options.arguments.set("alternate-exchange", std::string(f[i].substr(f[i].find('=') + 1)));
            } else {
                throw input_error{"unexpected or repeated exchange option " + quoted(f[i]) + "; expected " +
                                  std::string(syntax)};
            }
        }
        broker.declare_exchange(f[1], f[2], options);
    } else if (directive == "queue") {
        require_fields(f, 2, "queue <name>");
        if (f.size() > 2) throw input_error{"too many fields; expected queue <name>"};
        // An empty name asks the broker for a generated one, which no later line could name.
        if (f[1].empty()) throw input_error{"empty queue name"};
        queues.insert(broker.declare_queue(f[1]));
    } else if (directive == "bind") {
        require_fields(f, 4, "bind <queue> <exchange> <binding-key> [<arg>=<value> ...]");
        broker.bind_queue(f[1], f[2], f[3], parse_table(f, 4, "binding argument"));
    } else if (directive == "bind-exchange") {
        require_fields(f, 4, "bind-exchange <destination> <source> <binding-key> [<arg>=<value> ...]");
        broker.bind_exchange(f[1], f[2], f[3], parse_table(f, 4, "binding argument"));
    } else {
        throw input_error{"unknown directive " + quoted(directive) +
                          "; expected exchange, queue, bind or bind-exchange"};
    }
}

/// Loads TOPOLOGY_FILE into `broker`. Returns the exit status to stop with, or -1 to go on.
int load_topology(const char* path, warren::broker& broker, std::set<std::string>& queues) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        std::cerr << "warren-route: cannot open " << path << '\n';
        return exit_failure;
    }
    std::string line;
    for (std::size_t number = 1; std::getline(in, line); ++number) {
        if (line.empty() || line.front() == '#') continue;
        try {
            apply_declaration(broker, split_fields(line), queues);
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

struct message_spec {
    std::string exchange;
    warren::message message;
};

message_spec parse_message(std::string_view line) {
    const auto f = split_fields(line);
    if (f.size() < 2) throw input_error{"missing fields; expected <exchange> TAB <routing-key> [TAB <header>=<value> ...]"};
    message_spec spec{std::string(f[0]), {}};
    spec.message.routing_key = std::string(f[1]);
    spec.message.properties.headers = parse_table(f, 2, "header");
    return spec;
}

/// Publishes messages and finds out which queues got each one.
///
/// The broker says only how many queues took a message, so each message's body is its
/// number in the current batch; flush() drains every queue, in name order, and so
/// learns each message's queues already sorted. That costs one pass over the queues per
/// batch, not per message.
class router {
public:
    router(warren::broker& broker, std::vector<std::string> queues) : broker_(broker), queues_(std::move(queues)) {}

    static constexpr std::size_t batch_size = 4096;

    void publish(std::string_view exchange, warren::message msg) {
        msg.body = std::to_string(results_.size());
        results_.emplace_back();
        try {
            (void)broker_.publish(exchange, std::move(msg));
        } catch (const warren::error& e) {
            results_.back() = '!';
            results_.back() += e.name();
        }
    }

    [[nodiscard]] bool full() const noexcept { return results_.size() >= batch_size; }
    [[nodiscard]] const std::vector<std::string>& queues() const noexcept { return queues_; }

    /// Prints one line per message published since the last flush.
    void flush(std::ostream& out) {
        if (results_.empty()) return;
        for (const std::string& queue : queues_) {
            while (auto delivery = broker_.try_get(queue)) {
                const std::string& body = delivery->body();
                std::size_t index = 0;
                (void)std::from_chars(body.data(), body.data() + body.size(), index);
                std::string& line = results_[index];
                if (!line.empty()) line += ' ';
                line += queue;
            }
        }
        for (const std::string& line : results_) out << line << '\n';
        out.flush();
        results_.clear();
    }

private:
    warren::broker& broker_;
    std::vector<std::string> queues_; // sorted by byte value
    std::vector<std::string> results_;
};

/// Whether the next read of `in` would find data without waiting. libstdc++ asks the OS
/// (FIONREAD); where it cannot tell, the answer is "no", which costs only a smaller batch.
bool more_input_ready(std::istream& in) { return in.rdbuf()->in_avail() > 0; }

int route_stream(router& r, std::istream& in, std::ostream& out) {
    std::string line;
    for (std::size_t number = 1; std::getline(in, line); ++number) {
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

/// Publishes `messages` over and over for at least `minimum` of timed publishing; prints
/// `messages=<n> ns_per_message=<x>`. See the file comment for what is timed.
void bench(warren::broker& broker, const std::vector<std::string>& queues, const std::vector<message_spec>& messages,
           std::ostream& out) {
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
            for (const std::string& queue : queues) (void)broker.purge_queue(queue);
        }
    }
    const double ns = published == 0 ? 0.0
                                     : static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(timed).count()) /
                                           static_cast<double>(published);
    out << "messages=" << published << " ns_per_message=" << std::fixed << std::setprecision(1) << ns << '\n';
}

int run(int argc, char** argv) {
    bool bench_mode = false;
    bool no_cache = false;
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

    warren::broker broker;
    if (no_cache) broker.set_routing_cache_capacity(0); // covers exchanges declared later too
    std::set<std::string> declared;
    if (const int status = load_topology(topology, broker, declared); status >= 0) return status;
    router r(broker, std::vector<std::string>(declared.begin(), declared.end()));

    if (!bench_mode) return route_stream(r, std::cin, std::cout);

    // Load everything first, so reading input is never timed.
    std::vector<message_spec> messages;
    std::string line;
    for (std::size_t number = 1; std::getline(std::cin, line); ++number) {
        if (line.empty()) continue;
        try {
            messages.push_back(parse_message(line));
        } catch (const input_error& e) {
            std::cerr << "warren-route: <stdin>:" << number << ": " << e.reason << '\n';
            return exit_bad_input;
        }
    }
    for (const message_spec& spec : messages) {
        r.publish(spec.exchange, spec.message);
        if (r.full()) r.flush(std::cout);
    }
    r.flush(std::cout);
    bench(broker, r.queues(), messages, std::cout);
    return exit_ok;
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
