// Helpers for the orchestrator tests (tests/patterns_orchestrator*.cpp) on the
// single-threaded broker and a manual clock: a service that follows a script, and a loop
// that moves time to whatever the orchestrator has due next.
#pragma once

#include <algorithm>
#include <cstddef>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <warren/patterns/orchestrator.hpp>
#include <warren/patterns/service_error.hpp>
#include <warren/warren.hpp>

namespace warren_test {

/// What a scripted_service answers: `answer_prefix` + the request's body, or for a
/// failure an error reply whose reason is `failure`.
struct scripted_replies {
    std::string answer_prefix = "re:";
    std::string failure = "out of stock";
};

/// A service that does what its script says with each request it gets (the last entry
/// repeats), and records when each came (on the broker's clock) and what it carried.
class scripted_service {
public:
    enum class act { answer, ignore, fail, hold };
    struct seen {
        warren::clock::duration at;
        std::string body;
        std::optional<std::string> message_id;
        std::optional<std::string> correlation_id;
        std::optional<std::string> reply_to;
        warren::properties properties; // all of them
    };

    scripted_service(warren::broker& b, warren::manual_clock& time, const std::string& queue, std::vector<act> script,
                     scripted_replies how = {})
        : broker_(b), time_(time), script_(std::move(script)), how_(std::move(how)) {
        b.declare_queue(queue);
        sub_ = b.subscribe(queue, [this](warren::delivery& d) { on_request(d); });
    }

    /// Sends the reply `body` to held request `i` (in the order they were held) now.
    void release(std::size_t i, const std::string& body) { reply(held_.at(i), body, false); }
    /// Sends the ordinary answer to every request held and not released yet, now.
    void release() {
        for (std::size_t i = released_; i < held_.size(); ++i) reply(held_[i], how_.answer_prefix + held_[i].body, false);
        released_ = held_.size();
    }
    /// When each request came, on the broker's clock.
    [[nodiscard]] std::vector<warren::clock::duration> arrivals() const {
        std::vector<warren::clock::duration> at;
        for (const auto& r : requests) at.push_back(r.at);
        return at;
    }

    std::vector<seen> requests;

private:
    void on_request(const warren::delivery& d) {
        const auto& p = d.properties();
        requests.push_back({time_.elapsed(), d.body(), p.message_id, p.correlation_id, p.reply_to, p});
        const act what = script_.at(std::min(requests.size(), script_.size()) - 1);
        if (what == act::answer) reply(requests.back(), how_.answer_prefix + d.body(), false);
        if (what == act::fail) reply(requests.back(), "", true);
        if (what == act::hold) held_.push_back(requests.back());
    }
    void reply(const seen& r, const std::string& body, bool error) {
        warren::message m = error ? warren::error_reply(how_.failure) : warren::message{.routing_key = {}, .body = body};
        m.routing_key = r.reply_to.value_or("");
        m.properties.correlation_id = r.correlation_id;
        (void)broker_.publish("", std::move(m));
    }

    warren::broker& broker_;
    warren::manual_clock& time_;
    std::vector<act> script_;
    scripted_replies how_;
    std::vector<seen> held_;
    std::size_t released_ = 0;
    warren::subscription sub_;
};

using act = scripted_service::act;

/// Moves time to each next thing the orchestrator has due, polling and dispatching, until
/// `done` or nothing is due.
template <class Done>
void run_until(warren::broker& b, warren::manual_clock& time, warren::orchestrator<warren::broker>& o, Done done) {
    (void)b.dispatch();
    while (!done()) {
        const auto due = o.next_due();
        if (!due) return;
        time.advance(*due - time.now());
        (void)o.poll();
        (void)b.dispatch();
    }
}

} // namespace warren_test
