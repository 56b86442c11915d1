#pragma once
/// @file patterns/orchestrator.hpp
/// orchestrator: a composite service that calls services by request/reply (rpc_client),
/// one call with a per-attempt timeout and retries, calls in sequence, and calls in
/// parallel gathered until a deadline (scatter-gather). Built on the public broker API.
/// Its options and results are in orchestration_values.hpp.

#include <algorithm>
#include <chrono>
#include <concepts>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "../broker.hpp"
#include "../clock.hpp"
#include "../config.hpp"
#include "../error.hpp"
#include "../message.hpp"
#include "../options.hpp"
#include "orchestration_values.hpp"
#include "retry_policy.hpp"
#include "rpc_client.hpp"
#include "service_error.hpp"

namespace warren {

/// A composite service's side of orchestration: it calls services by request/reply and
/// drives the flow, one call, calls in sequence, or calls in parallel gathered until a
/// deadline. It owns an rpc_client (its reply queue) and adds to it:
///
/// - Retries: an attempt that timed out or was unroutable (or an error reply, with
///   call_options::retry_service_errors) is sent again after the retry policy's
///   delay_before_retry(attempts so far), measured on the broker's clock from the
///   attempt's deadline (a timeout) or from when the failure came (otherwise), so on a
///   warren::manual_clock each attempt goes out at a time a test can compute. Every attempt
///   of a call carries the same message_id (the call's, or a generated one), so servers can
///   deduplicate, and a fresh correlation_id, so that a late reply of an earlier attempt is
///   told apart: it is dropped and counted (late_replies()).
/// - Failures as values: a call ends with a call_result whose error names the service, the
///   message_id and the attempts. A service reports a failure by an error reply (header
///   `x-error`, see service_error.hpp); the orchestrator does not retry it by default.
/// - Sequences (call_sequence): each step's request is made from the previous reply; the
///   first failure stops the sequence and says which step failed.
/// - Scatter-gather (scatter_gather): requests sent at once, gathered until all ended, a
///   quorum of answers came, or the deadline passed; the result says which replied, which
///   failed, which timed out.
///
/// Time: nothing runs by itself. poll() applies it (fails overdue attempts, sends the
/// retries that are due, ends gathers past their deadline); next_due() says when poll()
/// next has work. The waiting forms (…_and_wait on warren::broker, …_for on
/// concurrent_broker) poll for you.
///
/// Each attempt is one rpc_client call of a whole message: the request's properties
/// (message_id, headers, ...) with the service as routing key, and the client's reply_to
/// and a fresh correlation_id. An attempt no queue takes fails at once, inside its publish,
/// and is retried like a timeout (the delay counted from then).
///
/// Destroying the orchestrator destroys the rpc_client (its reply queue), then drops the
/// calls still running without running their handlers (a future of call_async() then
/// holds broken_promise). The broker must outlive it.
/// @code
/// warren::broker broker;
/// warren::orchestrator orch(broker);
/// orch.call("payment", "42", {.timeout = 100ms, .retry = warren::retry_policy::fixed(3, 50ms)},
///           [](warren::call_result<> r) { std::cout << (r.ok() ? r.reply().body : r.error().what()); });
/// broker.dispatch(); orch.poll();           // or: auto r = orch.call_and_wait("payment", "42", {...});
/// @endcode
/// Thread safety: with concurrent_broker every member is thread-safe except the destructor
/// (no call may be running); with warren::broker, owner thread only. Handlers run with no
/// lock held, where the event that ends the call happens: inside dispatch() (a reply), in
/// poll() (a timeout, a deadline), or inside the call itself (unroutable at once).
template <class Broker>
    requires std::copy_constructible<typename Broker::body_type>
class orchestrator {
public:
    using broker_type = Broker;
    using message_type = typename Broker::message_type;
    using body_type = typename Broker::body_type;
    using delivery = typename Broker::delivery;
    using result = call_result<message_type>;
    using request = basic_request<message_type>;
    using step = basic_step<message_type>;
    using sequence_outcome = sequence_result<message_type>;
    using gather_outcome = gather_result<message_type>;
    /// What receives a call's outcome.
    using call_handler = std::function<void(result)>;
    /// What receives a sequence's outcome.
    using sequence_handler = std::function<void(sequence_outcome)>;
    /// What receives a scatter-gather's outcome.
    using gather_handler = std::function<void(gather_outcome)>;

    /// Makes the rpc_client (its reply queue, or with direct reply-to its reply consumer).
    explicit orchestrator(Broker& owner, rpc_client_options options = {})
        : broker_(owner), clock_(owner.time_source()), client_(owner, options),
          // The reply address is unique per client (a server-named queue, or a direct
          // reply-to address), so generated message ids are unique per orchestrator.
          message_prefix_(client_.reply_queue() + ".call-") {}
    /// Destroys the rpc_client, then drops the running calls unrun.
    ~orchestrator() = default;
    orchestrator(const orchestrator&) = delete;
    orchestrator& operator=(const orchestrator&) = delete;

    /// Calls `service` with `body`: sends the first attempt now, retries as `options`
    /// say, and runs `on_done` once with the outcome. Returns the call's message_id.
    /// Errors of the first publish (an unknown exchange) are thrown, with nothing pending.
    /// Thread-safe on concurrent_broker.
    std::string call(std::string_view service, body_type body, call_options options, call_handler on_done) {
        return call(request(std::string(service), std::move(body), std::move(options)), std::move(on_done));
    }
    /// call() of a whole request (its properties kept; a message_id of its own is used
    /// for every attempt). Thread-safe on concurrent_broker.
    std::string call(request r, call_handler on_done) {
        WARREN_ASSERT(static_cast<bool>(on_done), "orchestrator::call needs a handler");
        return start(std::move(r), std::move(on_done)).message_id;
    }

    /// call() with the outcome in a future. Someone must poll() meanwhile (retries and
    /// timeouts happen there), or wait in a …_for call. concurrent_broker only.
    /// Thread-safe.
    [[nodiscard]] std::future<result> call_async(request r)
        requires Broker::policy_type::thread_safe
    {
        auto promise = std::make_shared<std::promise<result>>();
        auto future = promise->get_future();
        (void)start(std::move(r), [promise](result outcome) { promise->set_value(std::move(outcome)); });
        return future;
    }

    /// Calls as call() does and dispatches the broker and polls until the call ends;
    /// returns its outcome. It never hangs: when a dispatch() delivers nothing, poll() has
    /// nothing due and the clock stands still (a manual_clock nobody advances), the call
    /// ends timed_out at once; with a moving clock it polls every millisecond.
    /// warren::broker only. Owner thread.
    [[nodiscard]] result call_and_wait(std::string_view service, body_type body, call_options options)
        requires(!Broker::policy_type::thread_safe)
    {
        return call_and_wait(request(std::string(service), std::move(body), std::move(options)));
    }
    /// call_and_wait() of a whole request. warren::broker only. Owner thread.
    [[nodiscard]] result call_and_wait(request r)
        requires(!Broker::policy_type::thread_safe)
    {
        auto outcome = std::make_shared<std::optional<result>>();
        const started call = start(std::move(r), [outcome](result done) { outcome->emplace(std::move(done)); });
        return dispatch_until(*outcome, [this, id = call.id] { give_up(id); });
    }

    /// Calls as call() does and blocks until the call ends (every attempt and delay on
    /// the broker's clock, checked at least every 10 ms of wall time); returns its
    /// outcome. Replies must reach the client meanwhile: the services are served by other
    /// threads. concurrent_broker only. Thread-safe.
    [[nodiscard]] result call_for(std::string_view service, body_type body, call_options options)
        requires Broker::policy_type::thread_safe
    {
        return call_for(request(std::string(service), std::move(body), std::move(options)));
    }
    /// call_for() of a whole request. concurrent_broker only. Thread-safe.
    [[nodiscard]] result call_for(request r)
        requires Broker::policy_type::thread_safe
    {
        auto w = std::make_shared<waiter<result>>();
        (void)start(std::move(r), [w](result done) { w->set(std::move(done)); });
        return wait_polling(*w);
    }

    /// Runs `steps` one after another: the first step's request is made from `input`,
    /// each next one from the reply before it; `on_done` runs once, after the last step or
    /// at the first failure (an unsuccessful call, or a request maker that threw).
    /// Thread-safe on concurrent_broker.
    void call_sequence(message_type input, std::vector<step> steps, sequence_handler on_done) {
        WARREN_ASSERT(static_cast<bool>(on_done), "orchestrator::call_sequence needs a handler");
        auto run = std::make_shared<sequence_run>(std::move(steps), std::move(on_done));
        next_step(run, input);
    }
    /// call_sequence() dispatching and polling until it ends (as call_and_wait does).
    /// warren::broker only. Owner thread.
    [[nodiscard]] sequence_outcome call_sequence_and_wait(message_type input, std::vector<step> steps)
        requires(!Broker::policy_type::thread_safe)
    {
        auto outcome = std::make_shared<std::optional<sequence_outcome>>();
        auto run = std::make_shared<sequence_run>(std::move(steps),
                                                  [outcome](sequence_outcome done) {
                                                      outcome->emplace(std::move(done));
                                                  });
        next_step(run, input);
        return dispatch_until(*outcome, [this, run] { give_up(run->current); });
    }
    /// call_sequence() blocking until it ends (as call_for does). concurrent_broker only.
    /// Thread-safe.
    [[nodiscard]] sequence_outcome call_sequence_for(message_type input, std::vector<step> steps)
        requires Broker::policy_type::thread_safe
    {
        auto w = std::make_shared<waiter<sequence_outcome>>();
        call_sequence(std::move(input), std::move(steps), [w](sequence_outcome done) { w->set(std::move(done)); });
        return wait_polling(*w);
    }

    /// Sends every request at once and runs `on_done` once with their results when all
    /// ended, when `options.quorum` answers came (or can no longer come), or when
    /// `options.deadline` passed on the broker's clock (in poll()), whichever is first.
    /// Each call keeps its own timeout and retries within the deadline. Errors of a first
    /// publish are thrown, the gather and its calls dropped. Thread-safe on
    /// concurrent_broker.
    void scatter_gather(std::vector<request> requests, gather_options options, gather_handler on_done) {
        WARREN_ASSERT(static_cast<bool>(on_done), "orchestrator::scatter_gather needs a handler");
        (void)start_gather(std::move(requests), options, std::move(on_done));
    }
    /// scatter_gather() dispatching and polling until it ends (as call_and_wait does; a
    /// clock standing still ends it at once, the calls still running timed out).
    /// warren::broker only. Owner thread.
    [[nodiscard]] gather_outcome scatter_gather_and_wait(std::vector<request> requests, gather_options options)
        requires(!Broker::policy_type::thread_safe)
    {
        auto outcome = std::make_shared<std::optional<gather_outcome>>();
        const std::uint64_t id = start_gather(std::move(requests), options,
                                              [outcome](gather_outcome done) { outcome->emplace(std::move(done)); });
        return dispatch_until(*outcome, [this, id] {
            end_gather(id, call_status::timed_out, "got no reply", stuck_tail);
        });
    }
    /// scatter_gather() blocking until it ends (as call_for does). concurrent_broker only.
    /// Thread-safe.
    [[nodiscard]] gather_outcome scatter_gather_for(std::vector<request> requests, gather_options options)
        requires Broker::policy_type::thread_safe
    {
        auto w = std::make_shared<waiter<gather_outcome>>();
        (void)start_gather(std::move(requests), options, [w](gather_outcome done) { w->set(std::move(done)); });
        return wait_polling(*w);
    }

    /// Applies the passage of time on the broker's clock: fails the overdue attempts
    /// (scheduling their retries, or ending their calls), sends the retries that are due,
    /// ends the gathers past their deadline. Returns how many of those it did. Handlers
    /// run here; an exception from one goes out, and what is left waits for the next
    /// poll(). Thread-safe on concurrent_broker.
    std::size_t poll() {
        std::size_t done = client_.expire();
        for (;;) {
            std::optional<std::uint64_t> retry;
            std::optional<std::uint64_t> gather;
            {
                std::lock_guard guard(lock_);
                const clock::time_point now = clock_.now();
                // One at a time, so that a throwing handler leaves the rest scheduled.
                if (!retries_.empty() && retries_.begin()->first <= now) {
                    retry = retries_.begin()->second;
                    retries_.erase(retries_.begin());
                } else if (!gather_deadlines_.empty() && gather_deadlines_.begin()->first <= now) {
                    gather = gather_deadlines_.begin()->second;
                }
            }
            if (retry) {
                send_attempt(*retry, false);
            } else if (gather) {
                end_gather(*gather, call_status::timed_out, "got no reply before the gather's deadline", "");
            } else {
                return done;
            }
            ++done;
        }
    }

    /// When poll() next has something to do: the earliest attempt deadline, retry or
    /// gather deadline; nothing if no call is running. Thread-safe on concurrent_broker.
    [[nodiscard]] std::optional<clock::time_point> next_due() const {
        std::lock_guard guard(lock_);
        std::optional<clock::time_point> due;
        for (const auto* set : {&retries_, &attempt_deadlines_, &gather_deadlines_}) {
            if (!set->empty() && (!due || set->begin()->first < *due)) due = set->begin()->first;
        }
        return due;
    }

    /// Calls running (waiting for a reply or for their next attempt). Thread-safe on
    /// concurrent_broker.
    [[nodiscard]] std::size_t running() const {
        std::lock_guard guard(lock_);
        return calls_.size();
    }
    /// Attempts sent so far, first attempts included. Thread-safe on concurrent_broker.
    [[nodiscard]] std::size_t attempts_sent() const {
        std::lock_guard guard(lock_);
        return attempts_;
    }
    /// Retries sent so far (attempts after the first). Thread-safe on concurrent_broker.
    [[nodiscard]] std::size_t retries_sent() const {
        std::lock_guard guard(lock_);
        return retried_;
    }
    /// Replies dropped because their attempt had already ended: after its timeout (counted
    /// by the rpc_client), or after its call ended otherwise (a later attempt answered, its
    /// gather ended). Thread-safe on concurrent_broker.
    [[nodiscard]] std::size_t late_replies() const {
        const std::size_t by_client = client_.late_replies();
        std::lock_guard guard(lock_);
        return by_client + late_;
    }
    /// The rpc_client the calls go through (its reply queue, its counters). Thread-safe.
    [[nodiscard]] const rpc_client<Broker>& client() const noexcept { return client_; }

private:
    using lock_type = std::conditional_t<Broker::policy_type::thread_safe, std::mutex, detail::rpc_null_lock>;
    using timers = std::set<std::pair<clock::time_point, std::uint64_t>>;

    struct call_state {
        std::string exchange;
        std::string service;
        std::string message_id;
        body_type body;
        warren::properties properties;
        call_options options;
        std::uint64_t seed = 0;
        std::vector<attempt_record> history;
        bool in_flight = false;
        clock::time_point deadline; // of the attempt in flight
        clock::time_point retry_at; // when not in flight
        std::optional<message_type> last_reply;
        std::optional<warren::error> last_error;
        call_handler on_done;
    };

    struct gather_state {
        std::vector<std::string> services;
        std::vector<std::uint64_t> calls; // 0: not started
        std::vector<std::optional<result>> results;
        std::size_t ended = 0;
        std::size_t replied = 0;
        std::size_t quorum = 0;
        clock::time_point deadline;
        gather_handler on_done;
    };

    using cut_calls = std::map<std::size_t, call_state>;

    struct sequence_run {
        sequence_run(std::vector<step> s, sequence_handler h) : steps(std::move(s)), on_done(std::move(h)) {}
        std::vector<step> steps;
        sequence_handler on_done;
        std::vector<result> calls;
        std::uint64_t current = 0;
        bool ended = false; // on_done has run (or is running)
    };

    struct started {
        std::uint64_t id;
        std::string message_id;
    };

    static constexpr std::string_view stuck_tail = ": nothing left to deliver and the clock stands still";

    template <class R>
    struct waiter {
        std::mutex mutex;
        std::condition_variable done;
        std::optional<R> outcome;
        void set(R r) {
            {
                std::lock_guard guard(mutex);
                outcome.emplace(std::move(r));
            }
            done.notify_all();
        }
    };

    static clock::time_point after(clock::time_point from, clock::duration d) noexcept {
        if (d <= clock::duration::zero()) return from;
        if (d > clock::time_point::max() - from) return clock::time_point::max();
        return from + d;
    }

    static std::string duration_text(clock::duration d) {
        using std::chrono::milliseconds;
        if (d % milliseconds(1) == clock::duration::zero()) {
            return std::to_string(std::chrono::duration_cast<milliseconds>(d).count()) + " ms";
        }
        return std::to_string(d.count()) + " ns";
    }

    /// "call to service 'payment' (message_id '...') " + what + " after 2 attempts" + tail.
    static warren::error failure(reply_code code, const call_state& c, std::string_view what, std::string_view tail) {
        std::string text = "call to service " + detail::quoted(c.service);
        if (!c.exchange.empty()) text += " on exchange " + detail::quoted(c.exchange);
        text += " (message_id " + detail::quoted(c.message_id) + ") " + std::string(what) + " after " +
                std::to_string(c.history.size()) + (c.history.size() == 1 ? " attempt" : " attempts") +
                std::string(tail);
        return warren::error(code, text);
    }

    /// The outcome of a call that ends with `status`; `what` and `tail` replace the
    /// default text of a timed_out or cancelled one.
    static result outcome(call_state& c, call_status status, std::string_view what = {}, std::string_view tail = {}) {
        std::optional<warren::error> error;
        switch (status) {
        case call_status::replied: break;
        case call_status::service_error:
            error = failure(reply_code::precondition_failed, c, "failed",
                            ": the service answered " +
                                detail::quoted(service_error_of(c.last_reply->properties).value_or("")));
            break;
        case call_status::timed_out:
            if (what.empty()) {
                error = failure(reply_code::resource_error, c, "got no reply in time",
                                " (timeout " + duration_text(c.options.timeout) +
                                    (c.history.size() > 1 ? " each)" : ")"));
            } else {
                error = failure(reply_code::resource_error, c, what, tail);
            }
            break;
        case call_status::unroutable:
            error = failure(reply_code::no_route, c, c.last_error ? "could not be sent" : "was unroutable",
                            c.last_error ? ": " + std::string(c.last_error->what()) : std::string());
            break;
        case call_status::cancelled:
            error = failure(reply_code::resource_error, c, what.empty() ? "was cancelled" : what, tail);
            break;
        }
        std::optional<message_type> reply;
        if (status == call_status::replied || status == call_status::service_error) reply = std::move(c.last_reply);
        return result(c.service, c.message_id, status, std::move(c.history), std::move(reply), std::move(error));
    }

    /// Removes a call and its timers; lock held.
    std::optional<call_state> extract(std::uint64_t id) {
        const auto it = calls_.find(id);
        if (it == calls_.end()) return std::nullopt;
        call_state c = std::move(it->second);
        calls_.erase(it);
        if (c.in_flight) {
            attempt_deadlines_.erase({c.deadline, id});
        } else {
            retries_.erase({c.retry_at, id});
        }
        return c;
    }

    /// Registers a call and sends its first attempt. A call of a gather (`member`: the
    /// gather and the request's index) joins it under the same lock, so that the gather,
    /// when it ends on another thread, cuts it short; if the gather has already ended the
    /// call is not made (id 0).
    started start(request r, call_handler on_done,
                  std::optional<std::pair<std::uint64_t, std::size_t>> member = std::nullopt) {
        started s = enroll(std::move(r), std::move(on_done), member);
        if (s.id != 0) send_attempt(s.id, true);
        return s;
    }

    /// Registers a call without sending anything (see start()).
    started enroll(request r, call_handler on_done, std::optional<std::pair<std::uint64_t, std::size_t>> member) {
        std::uint64_t id = 0;
        std::string message_id;
        {
            std::lock_guard guard(lock_);
            if (member) {
                const auto g = gathers_.find(member->first);
                if (g == gathers_.end()) return {0, {}};
                g->second.calls[member->second] = issued_ + 1;
            }
            id = ++issued_;
            call_state c{.exchange = r.options.exchange,
                         .service = std::move(r.service),
                         .message_id = {},
                         .body = std::move(r.message.body),
                         .properties = std::move(r.message.properties),
                         .options = std::move(r.options),
                         .seed = 0,
                         .history = {},
                         .in_flight = false,
                         .deadline = {},
                         .retry_at = {},
                         .last_reply = {},
                         .last_error = {},
                         .on_done = std::move(on_done)};
            if (!c.properties.message_id) c.properties.message_id = message_prefix_ + std::to_string(id);
            c.message_id = *c.properties.message_id;
            c.seed = c.options.jitter_seed.value_or(std::hash<std::string>{}(c.message_id));
            message_id = c.message_id;
            calls_.emplace(id, std::move(c));
        }
        return {id, std::move(message_id)};
    }

    /// Sends the next attempt of call `id`: the call's request, with the service as
    /// routing key, through the rpc_client (which adds reply_to and a fresh correlation
    /// id). A first attempt's publish errors are thrown with the call dropped; a retry's end
    /// the call unroutable. An attempt no queue takes fails inside rpc_client::call.
    void send_attempt(std::uint64_t id, bool first) {
        std::uint32_t attempt = 0;
        std::string exchange;
        message_type outgoing;
        clock::duration timeout{};
        {
            std::lock_guard guard(lock_);
            const auto it = calls_.find(id);
            if (it == calls_.end()) return; // ended meanwhile (its gather's deadline)
            call_state& c = it->second;
            const clock::time_point now = clock_.now();
            c.history.push_back({now, call_status::timed_out});
            attempt = static_cast<std::uint32_t>(c.history.size());
            c.in_flight = true;
            c.deadline = after(now, c.options.timeout);
            attempt_deadlines_.emplace(c.deadline, id);
            exchange = c.exchange;
            outgoing.routing_key = c.service;
            outgoing.body = c.body;
            outgoing.properties = c.properties;
            timeout = c.options.timeout;
            ++attempts_;
            if (!first) ++retried_;
        }
#if WARREN_EXCEPTIONS
        try {
#endif
            (void)client_.call(exchange, std::move(outgoing), timeout, [this, id, attempt](rpc_result<message_type> r) {
                if (r.ok()) {
                    on_reply(id, attempt, std::move(r.reply()));
                } else {
                    on_failure(id, attempt,
                               r.error().code() == reply_code::no_route ? call_status::unroutable
                                                                        : call_status::timed_out,
                               std::nullopt);
                }
            });
#if WARREN_EXCEPTIONS
        } catch (const warren::error& e) {
            // The publish refused the request (nothing was sent, and rpc_client dropped the
            // attempt), or a handler that ran inside it threw: then the attempt is over.
            bool refused = false;
            {
                std::lock_guard guard(lock_);
                refused = current(id, attempt);
            }
            if (!first) {
                if (!refused) throw;
                on_failure(id, attempt, call_status::unroutable, e);
                return;
            }
            drop_call(id);
            throw;
        } catch (...) {
            drop_call(id);
            throw;
        }
#endif
    }

    /// A reply to attempt `attempt` of call `id`.
    void on_reply(std::uint64_t id, std::uint32_t attempt, message_type reply) {
        if (service_error_of(reply.properties)) {
            on_failure(id, attempt, call_status::service_error, std::nullopt, std::move(reply));
            return;
        }
        std::optional<call_state> ended;
        {
            std::lock_guard guard(lock_);
            if (!current(id, attempt)) {
                ++late_;
                return;
            }
            ended = extract(id);
            ended->history.back().outcome = call_status::replied;
            ended->last_reply = std::move(reply);
        }
        finish(std::move(*ended), call_status::replied);
    }

    /// Attempt `attempt` of call `id` failed with `status`: retried if the policy allows,
    /// else the call ends.
    void on_failure(std::uint64_t id, std::uint32_t attempt, call_status status, std::optional<warren::error> error,
                    std::optional<message_type> reply = std::nullopt) {
        std::optional<call_state> ended;
        bool retry_now = false;
        {
            std::lock_guard guard(lock_);
            if (!current(id, attempt)) {
                if (reply) ++late_; // a timeout of an attempt already ended is no news
                return;
            }
            call_state& c = calls_.find(id)->second;
            attempt_deadlines_.erase({c.deadline, id});
            c.in_flight = false;
            c.history.back().outcome = status;
            c.last_reply = std::move(reply);
            c.last_error = std::move(error);
            const bool retryable = status != call_status::service_error || c.options.retry_service_errors;
            if (retryable && c.options.retry.allows_retry(attempt)) {
                const clock::time_point now = clock_.now();
                // From the deadline, not from whenever the timeout was noticed, so that the
                // schedule does not depend on how often poll() runs.
                const clock::time_point base = status == call_status::timed_out ? std::min(c.deadline, now) : now;
                c.retry_at = after(base, c.options.retry.delay_before_retry(attempt, c.seed));
                retries_.emplace(c.retry_at, id);
                retry_now = c.retry_at <= now;
                if (retry_now) retries_.erase({c.retry_at, id});
            } else {
                ended = extract(id);
            }
        }
        if (retry_now) {
            send_attempt(id, false);
        } else if (ended) {
            finish(std::move(*ended), status);
        }
    }

    /// Forgets call `id` without running its handler.
    void drop_call(std::uint64_t id) {
        std::optional<call_state> dropped;
        std::lock_guard guard(lock_);
        dropped = extract(id);
    }

    /// Whether `attempt` is call `id`'s attempt in flight; lock held.
    bool current(std::uint64_t id, std::uint32_t attempt) const {
        const auto it = calls_.find(id);
        return it != calls_.end() && it->second.in_flight && it->second.history.size() == attempt;
    }

    /// Runs an ended call's handler, no lock held.
    static void finish(call_state c, call_status status, std::string_view what = {}, std::string_view tail = {}) {
        call_handler on_done = std::move(c.on_done);
        on_done(outcome(c, status, what, tail));
    }

    /// Ends call `id` now, timed out: a blocking wait found nothing left to wait for.
    void give_up(std::uint64_t id) {
        std::optional<call_state> ended;
        {
            std::lock_guard guard(lock_);
            ended = extract(id);
        }
        if (ended) finish(std::move(*ended), call_status::timed_out, "got no reply", stuck_tail);
    }

    /// Makes the next step's request from `previous` and calls it, or ends the sequence.
    void next_step(const std::shared_ptr<sequence_run>& run, const message_type& previous) {
        const std::size_t index = run->calls.size();
        if (index == run->steps.size()) {
            end_sequence(*run, std::nullopt, std::nullopt);
            return;
        }
        step& s = run->steps[index];
        std::optional<message_type> made;
#if WARREN_EXCEPTIONS
        try {
            made.emplace(s.request(previous));
        } catch (const std::exception& e) {
            end_sequence(*run, index, "could not make its request: " + std::string(e.what()));
            return;
        } catch (...) {
            end_sequence(*run, index, "could not make its request: an exception not derived from std::exception");
            return;
        }
#else
        made.emplace(s.request(previous));
#endif
        // Known as the current call before it is sent: its reply may come on another thread
        // (or inside the send) and move the sequence on.
        run->current = enroll(request(s.service, std::move(*made), s.options), [this, run](result r) {
                           const bool ok = r.ok();
                           run->calls.push_back(std::move(r));
                           if (ok) {
                               next_step(run, run->calls.back().reply());
                           } else {
                               end_sequence(*run, run->calls.size() - 1, run->calls.back().error().what());
                           }
                       }, std::nullopt).id;
#if WARREN_EXCEPTIONS
        try {
            send_attempt(run->current, true);
        } catch (const warren::error& e) {
            // The sequence's own handler threw it, inside the send (an attempt unroutable at
            // once ended the sequence): it goes on out.
            if (run->ended) throw;
            // An unknown exchange: the call was dropped.
            end_sequence(*run, index, "could not be sent: " + std::string(e.what()));
        }
#else
        send_attempt(run->current, true);
#endif
    }

    static void end_sequence(sequence_run& run, std::optional<std::size_t> failed, std::optional<std::string> why) {
        std::optional<warren::error> failure;
        if (failed) {
            failure.emplace(reply_code::precondition_failed,
                            "step " + std::to_string(*failed + 1) + " of " + std::to_string(run.steps.size()) +
                                " (service " + detail::quoted(run.steps[*failed].service) + ") failed: " + *why);
        }
        run.ended = true;
        sequence_handler on_done = std::move(run.on_done);
        on_done(sequence_outcome(std::move(run.calls), run.steps.size(), failed, std::move(failure)));
    }

    /// Registers a gather and starts its calls.
    std::uint64_t start_gather(std::vector<request> requests, gather_options options, gather_handler on_done) {
        std::uint64_t id = 0;
        const std::size_t n = requests.size();
        {
            std::lock_guard guard(lock_);
            id = ++gathers_issued_;
            gather_state g;
            for (const request& r : requests) g.services.push_back(r.service);
            g.calls.assign(n, 0);
            g.results.resize(n);
            g.quorum = options.quorum;
            g.deadline = after(clock_.now(), options.deadline);
            g.on_done = std::move(on_done);
            gathers_.emplace(id, std::move(g));
            gather_deadlines_.emplace(gathers_.at(id).deadline, id);
        }
        if (n == 0) {
            end_gather(id, call_status::cancelled, "", "");
            return id;
        }
        for (std::size_t i = 0; i < n; ++i) {
#if WARREN_EXCEPTIONS
            try {
#endif
                // Not made once the calls before have ended the gather (a quorum).
                if (start(std::move(requests[i]), [this, id, i](result r) { gathered(id, i, std::move(r)); },
                          std::pair{id, i})
                        .id == 0) {
                    break;
                }
#if WARREN_EXCEPTIONS
            } catch (...) {
                drop_gather(id);
                throw;
            }
#endif
        }
        return id;
    }

    /// Call `i` of gather `id` ended.
    void gathered(std::uint64_t id, std::size_t i, result r) {
        std::optional<gather_state> ended;
        cut_calls cut;
        {
            std::lock_guard guard(lock_);
            const auto it = gathers_.find(id);
            if (it == gathers_.end()) return;
            gather_state& g = it->second;
            if (r.ok()) ++g.replied;
            ++g.ended;
            g.results[i].emplace(std::move(r));
            const std::size_t n = g.results.size();
            const std::size_t needed = g.quorum == 0 ? n : std::min(g.quorum, n);
            if (g.ended == n || (g.quorum != 0 && (g.replied >= needed || g.replied + (n - g.ended) < needed))) {
                ended = take_gather(id, cut);
            }
        }
        if (ended) complete_gather(std::move(*ended), std::move(cut), call_status::cancelled, "was cancelled",
                                   ": its gather had ended");
    }

    /// Ends gather `id` now, its calls still running ending with `status`.
    void end_gather(std::uint64_t id, call_status status, std::string_view what, std::string_view tail) {
        std::optional<gather_state> ended;
        cut_calls cut;
        {
            std::lock_guard guard(lock_);
            ended = take_gather(id, cut);
        }
        if (ended) complete_gather(std::move(*ended), std::move(cut), status, what, tail);
    }

    /// Removes gather `id` and the calls still running in it (into `cut`, by index); lock
    /// held.
    std::optional<gather_state> take_gather(std::uint64_t id, cut_calls& cut) {
        const auto it = gathers_.find(id);
        if (it == gathers_.end()) return std::nullopt;
        gather_state g = std::move(it->second);
        gathers_.erase(it);
        gather_deadlines_.erase({g.deadline, id});
        for (std::size_t i = 0; i < g.calls.size(); ++i) {
            if (g.results[i] || g.calls[i] == 0) continue;
            if (auto c = extract(g.calls[i])) cut.emplace(i, std::move(*c));
        }
        return g;
    }

    /// Fills the results of the calls cut short and runs the gather's handler.
    static void complete_gather(gather_state g, cut_calls cut, call_status status, std::string_view what,
                                std::string_view tail) {
        std::vector<result> results;
        results.reserve(g.results.size());
        for (std::size_t i = 0; i < g.results.size(); ++i) {
            if (g.results[i]) {
                results.push_back(std::move(*g.results[i]));
            } else if (const auto c = cut.find(i); c != cut.end()) {
                if (!c->second.history.empty()) c->second.history.back().outcome = status;
                results.push_back(outcome(c->second, status, what, tail));
            } else { // not made (the gather ended before its turn), or ending on another thread
                results.emplace_back(g.services[i], std::string(), call_status::cancelled,
                                     std::vector<attempt_record>{}, std::nullopt,
                                     warren::error(reply_code::resource_error,
                                                   "call to service " + detail::quoted(g.services[i]) +
                                                       " was cancelled: its gather ended before its result was in"));
            }
        }
        gather_handler on_done = std::move(g.on_done);
        on_done(gather_outcome(std::move(results), g.quorum));
    }

    /// Forgets a gather and its calls without running any handler.
    void drop_gather(std::uint64_t id) {
        std::optional<gather_state> dropped;
        cut_calls cut;
        std::lock_guard guard(lock_);
        dropped = take_gather(id, cut);
    }

    /// warren::broker: dispatches and polls until `outcome` is set; `stuck` ends the work
    /// when nothing can move it on any more.
    template <class R, class Stuck>
    R dispatch_until(std::optional<R>& outcome, Stuck stuck) {
        clock::time_point seen = clock_.now();
        for (;;) {
            if (outcome) return std::move(*outcome);
            if (poll() != 0) continue;
            if (outcome) continue;
            if (broker_.dispatch() != 0) continue;
            if (outcome) continue;
            const clock::time_point now = clock_.now();
            if (now == seen) { // nothing to deliver and time stands still: nothing can come
                stuck();
                continue;
            }
            seen = now;
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
    }

    /// concurrent_broker: waits for `w`, polling at least every 10 ms of wall time and
    /// when the next thing is due on the broker's clock.
    template <class R>
    R wait_polling(waiter<R>& w) {
        for (;;) {
            clock::duration slice = std::chrono::milliseconds(10);
            if (const auto due = next_due()) slice = std::clamp<clock::duration>(*due - clock_.now(), {}, slice);
            {
                std::unique_lock guard(w.mutex);
                w.done.wait_for(guard, slice, [&] { return w.outcome.has_value(); });
                if (w.outcome) return std::move(*w.outcome);
            }
            (void)poll();
        }
    }

    Broker& broker_;
    const clock& clock_;
    mutable lock_type lock_; // guards what follows, up to the client
    std::uint64_t issued_ = 0;
    std::uint64_t gathers_issued_ = 0;
    std::map<std::uint64_t, call_state> calls_;
    std::map<std::uint64_t, gather_state> gathers_;
    timers retries_;
    timers attempt_deadlines_;
    timers gather_deadlines_;
    std::size_t attempts_ = 0;
    std::size_t retried_ = 0;
    std::size_t late_ = 0;
    rpc_client<Broker> client_; // after the state its handlers use: destroyed before it
    std::string message_prefix_; // after the client: made from its reply address
};

} // namespace warren
