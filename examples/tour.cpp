// A guided tour of warren: every exchange type, the default exchange, acknowledgements and
// errors, each shown by doing it and printing what happened.
//
// Exits 0 only if everything behaved as the narrative says.

#include <cstddef>
#include <iomanip>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include <warren/warren.hpp>

namespace {

int checks = 0;
int failures = 0;

/// Counts a check; prints the failure so a broken run says what broke.
void expect(bool ok, std::string_view what) {
    ++checks;
    if (!ok) {
        ++failures;
        std::cout << "   !! UNEXPECTED: " << what << '\n';
    }
}

/// Takes every ready message of `queue` (basic.get until empty) and returns their bodies.
std::vector<std::string> drain(warren::broker& broker, std::string_view queue) {
    std::vector<std::string> bodies;
    while (auto d = broker.try_get(queue)) bodies.push_back(d->body());
    return bodies;
}

std::string quote(std::string_view s) { return "\"" + std::string(s) + "\""; }

std::string queues_phrase(std::size_t n) {
    if (n == 0) return "0 queues: unroutable, dropped";
    return std::to_string(n) + (n == 1 ? " queue" : " queues");
}

/// Publishes and prints one line saying where it went.
std::size_t publish(warren::broker& broker, std::string_view exchange, warren::message msg) {
    const std::string key = msg.routing_key;
    const std::string body = msg.body;
    const std::size_t n = broker.publish(exchange, std::move(msg));
    std::cout << "   publish " << std::left << std::setw(34)
              << ("key '" + key + "' " + quote(body)) << " -> " << queues_phrase(n) << '\n';
    return n;
}

void show_queue(std::string_view name, const std::vector<std::string>& bodies) {
    std::cout << "   queue '" << name << "' holds: ";
    if (bodies.empty()) std::cout << "(nothing)";
    for (std::size_t i = 0; i < bodies.size(); ++i) std::cout << (i ? ", " : "") << quote(bodies[i]);
    std::cout << '\n';
}

void heading(std::string_view text) { std::cout << '\n' << text << '\n'; }

void default_exchange(warren::broker& broker) {
    heading("1. The default exchange \"\" routes to the queue whose name is the routing key");
    broker.declare_queue("greetings");
    const std::size_t n = publish(broker, "", {.routing_key = "greetings", .body = "hello"});
    const auto got = drain(broker, "greetings");
    show_queue("greetings", got);
    expect(n == 1 && got == std::vector<std::string>{"hello"}, "default exchange delivers to 'greetings'");
}

void fanout(warren::broker& broker) {
    heading("2. Fanout: every bound queue gets a copy, whatever the key");
    broker.declare_exchange("news", "fanout");
    for (const char* q : {"alice", "bob"}) {
        broker.declare_queue(q);
        broker.bind_queue(q, "news");
    }
    std::cout << "   exchange 'news' (fanout); queues 'alice' and 'bob' bound to it\n";
    const std::size_t n = publish(broker, "news", {.routing_key = "ignored", .body = "warren 0.1 is out"});
    const auto alice = drain(broker, "alice");
    const auto bob = drain(broker, "bob");
    show_queue("alice", alice);
    show_queue("bob", bob);
    const std::vector<std::string> expected{"warren 0.1 is out"};
    expect(n == 2 && alice == expected && bob == expected, "fanout copies to alice and bob");
}

void direct(warren::broker& broker) {
    heading("3. Direct: a queue gets the messages whose key equals its binding key");
    broker.declare_exchange("payments", "direct");
    broker.declare_queue("eu");
    broker.declare_queue("us");
    broker.bind_queue("eu", "payments", "EUR");
    broker.bind_queue("us", "payments", "USD");
    std::cout << "   exchange 'payments' (direct); 'eu' bound with key 'EUR', 'us' with 'USD'\n";
    const std::size_t eur = publish(broker, "payments", {.routing_key = "EUR", .body = "10 EUR"});
    const std::size_t usd = publish(broker, "payments", {.routing_key = "USD", .body = "20 USD"});
    const std::size_t gbp = publish(broker, "payments", {.routing_key = "GBP", .body = "5 GBP"});
    const auto eu = drain(broker, "eu");
    const auto us = drain(broker, "us");
    show_queue("eu", eu);
    show_queue("us", us);
    expect(eur == 1 && usd == 1 && gbp == 0, "direct routes EUR and USD once each, GBP nowhere");
    expect(eu == std::vector<std::string>{"10 EUR"} && us == std::vector<std::string>{"20 USD"},
           "eu holds EUR, us holds USD");
}

void topic(warren::broker& broker) {
    heading("4. Topic: keys are dot-separated words; '*' matches one word, '#' zero or more");
    broker.declare_exchange("weather", "topic");
    struct binding {
        const char* queue;
        const char* pattern;
    };
    const binding bindings[] = {{"london", "uk.london.*"}, {"uk", "uk.#"}, {"rain", "#.rain"}};
    for (const auto& b : bindings) {
        broker.declare_queue(b.queue);
        broker.bind_queue(b.queue, "weather", b.pattern);
    }
    std::cout << "   exchange 'weather' (topic); 'london' <- \"uk.london.*\", 'uk' <- \"uk.#\", "
                 "'rain' <- \"#.rain\"\n\n";
    struct row {
        const char* key;
        const char* expected; // which of london, uk, rain get it: "x" or "-" each
        const char* why;
    };
    const row rows[] = {
        {"uk.london.rain", "xxx", ""},
        {"uk.london.sun", "xx-", ""},
        {"fr.paris.rain", "--x", ""},
        {"rain", "--x", "'#' matches zero words"},
        {"uk", "-x-", "'#' matches zero words"},
        {"uk.london", "-x-", "'*' needs exactly one word"},
        {"uk.london.soho.rain", "-xx", "'*' is one word, not two"},
    };
    std::cout << "   " << std::left << std::setw(22) << "routing key" << "london  uk  rain\n";
    for (const auto& r : rows) {
        (void)broker.publish("weather", {.routing_key = r.key, .body = r.key});
        std::string got;
        for (const auto& b : bindings) got += drain(broker, b.queue) == std::vector<std::string>{r.key} ? 'x' : '-';
        std::cout << "   " << std::left << std::setw(22) << r.key << "  " << got[0] << "     " << got[1] << "    "
                  << got[2] << (*r.why ? "    " : "") << r.why << '\n';
        expect(got == r.expected, std::string("topic routing of ") + r.key);
    }
}

void headers(warren::broker& broker) {
    heading("5. Headers: match on message headers; x-match 'all' needs every field, 'any' one");
    broker.declare_exchange("documents", "headers");
    broker.declare_queue("pdf-reports");
    broker.declare_queue("pdf-or-report");
    broker.bind_queue("pdf-reports", "documents", "", {{"x-match", "all"}, {"format", "pdf"}, {"type", "report"}});
    broker.bind_queue("pdf-or-report", "documents", "", {{"x-match", "any"}, {"format", "pdf"}, {"type", "report"}});
    std::cout << "   'pdf-reports'   <- {x-match: all, format: pdf, type: report}\n"
                 "   'pdf-or-report' <- {x-match: any, format: pdf, type: report}\n\n";
    struct row {
        const char* format;
        const char* type;
        const char* expected; // pdf-reports, pdf-or-report
    };
    const row rows[] = {{"pdf", "report", "xx"}, {"pdf", "log", "-x"}, {"zip", "report", "-x"}, {"zip", "log", "--"}};
    std::cout << "   " << std::left << std::setw(32) << "message headers" << "pdf-reports  pdf-or-report\n";
    for (const auto& r : rows) {
        warren::message msg{.routing_key = "", .body = "doc"};
        msg.properties.headers = {{"format", r.format}, {"type", r.type}};
        (void)broker.publish("documents", std::move(msg));
        std::string got;
        for (const char* q : {"pdf-reports", "pdf-or-report"}) got += drain(broker, q).size() == 1 ? 'x' : '-';
        const std::string text = std::string("{format: ") + r.format + ", type: " + r.type + "}";
        std::cout << "   " << std::left << std::setw(32) << text << "     " << got[0] << "            " << got[1]
                  << '\n';
        expect(got == r.expected, "headers routing of " + text);
    }
}

void acknowledgements(warren::broker& broker) {
    heading("6. Manual acks: a message rejected with requeue comes back, flagged 'redelivered'");
    broker.declare_queue("jobs");
    (void)broker.publish("", {.routing_key = "jobs", .body = "resize photo.jpg"});
    std::vector<bool> redelivered_flags;
    auto sub = broker.subscribe(
        "jobs",
        [&](warren::delivery& d) {
            redelivered_flags.push_back(d.redelivered());
            std::cout << "   delivery " << redelivered_flags.size() << ": " << quote(d.body())
                      << "  redelivered=" << (d.redelivered() ? "yes" : "no ");
            if (!d.redelivered()) {
                std::cout << "  -> reject(requeue = true): not now, put it back\n";
                d.reject(true);
            } else {
                std::cout << "  -> ack: done, the queue forgets it\n";
                d.ack();
            }
        },
        {.ack = warren::ack_mode::manual});
    std::cout << "   consumer on 'jobs' with manual acks; broker.dispatch() runs it:\n";
    const std::size_t delivered = broker.dispatch();
    const auto stats = broker.queue_stats("jobs");
    std::cout << "   'jobs' afterwards: " << stats.ready << " ready, " << stats.unacked << " unacked, "
              << stats.requeued << " requeued, " << stats.acked << " acked\n";
    expect(delivered == 2 && redelivered_flags == std::vector<bool>{false, true},
           "delivered twice, the second time redelivered");
    expect(stats.ready == 0 && stats.unacked == 0 && stats.requeued == 1 && stats.acked == 1,
           "jobs ends empty with one requeue and one ack");
}

void errors(warren::broker& broker) {
    heading("7. Errors: bad requests throw warren::error carrying RabbitMQ's reply code");
    auto attempt = [](std::string_view what, auto&& action, warren::reply_code expected) {
        std::cout << "   " << std::left << std::setw(30) << what << " -> ";
        try {
            action();
            std::cout << "no error?\n";
            expect(false, std::string(what) + " should throw");
        } catch (const warren::error& e) {
            std::cout << e.what() << " (" << static_cast<int>(e.code()) << ")\n";
            expect(e.code() == expected, std::string(what) + " throws the expected code");
        }
    };
    attempt("publish to 'nowhere'", [&] { (void)broker.publish("nowhere", {.routing_key = "x", .body = "?"}); },
            warren::reply_code::not_found);
    attempt("redeclare 'news' as direct", [&] { broker.declare_exchange("news", "direct"); },
            warren::reply_code::precondition_failed);
    attempt("bind missing queue 'ghost'", [&] { broker.bind_queue("ghost", "news"); },
            warren::reply_code::not_found);
}

} // namespace

int main() {
    std::cout << "warren tour: RabbitMQ's model inside one process.\n"
                 "Publishers send to exchanges; exchanges route to queues by bindings; consumers read queues.\n";
    warren::broker broker;
    default_exchange(broker);
    fanout(broker);
    direct(broker);
    topic(broker);
    headers(broker);
    acknowledgements(broker);
    errors(broker);
    std::cout << '\n';
    if (failures != 0) {
        std::cout << "Tour FAILED: " << failures << " of " << checks << " checks did not hold.\n";
        return 1;
    }
    std::cout << "Tour complete: all " << checks << " checks held.\n";
    return 0;
}
