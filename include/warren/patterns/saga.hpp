#pragma once
/// @file patterns/saga.hpp
/// The orchestrated saga: a sequence of local transactions (steps), each with an action and
/// a compensation, driven by a coordinator (saga_orchestrator) over request/reply; a step
/// that fails makes the compensations of the completed steps run in reverse order. Built on
/// the public broker API only. saga_participant is the other side: a service's request
/// queue served with deduplication by message_id (saga_participant.hpp). The choreographed form is in
/// saga_choreography.hpp.
///
/// The wire convention, shared by both sides:
/// - a request carries message_id = "<saga id>/<step>" for an action and
///   "<saga id>/<step>/compensate" for a compensation (the same for every retry, so that
///   the participant deduplicates), correlation_id = the saga id, reply_to = the
///   coordinator's reply queue, and the headers x-saga-id, x-saga-step, x-saga-phase
///   ("action" or "compensation") and x-saga-attempt (1, 2, ...);
/// - a reply carries the request's correlation_id (as rpc_server copies it) and, from
///   saga_participant, the header x-saga-request = the request's message_id;
/// - a reply is a failure when it has an x-error header, whose text says why (the same
///   convention as the orchestrator's, patterns/service_error.hpp); any other reply is a
///   success whose body is the step's result. A failure is an answer (the participant
///   refused), which the coordinator does not retry unless the operation says
///   retry_answers; a failure reply that also has the header x-saga-transient (true) says
///   the participant could not answer this time (its handler threw) and is retried, as
///   timeouts are.

#include <atomic>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "../broker.hpp"
#include "../clock.hpp"
#include "../config.hpp"
#include "../error.hpp"
#include "../message.hpp"
#include "../options.hpp"
#include "retry_policy.hpp"
#include "rpc_client.hpp"
#include "service_error.hpp"

namespace warren {

/// Where a saga is.
enum class saga_status : std::uint8_t {
    running,      ///< its actions are running, forwards
    compensating, ///< a step failed; the completed steps' compensations are running, backwards
    completed,    ///< every action succeeded
    rolled_back,  ///< a step failed and every compensation it called for succeeded
    failed,       ///< a step failed and some compensation failed too, after its retries
};

/// The name of a status ("running", "rolled_back", ...).
[[nodiscard]] constexpr std::string_view to_string(saga_status status) noexcept {
    switch (status) {
    case saga_status::running: return "running";
    case saga_status::compensating: return "compensating";
    case saga_status::completed: return "completed";
    case saga_status::rolled_back: return "rolled_back";
    case saga_status::failed: return "failed";
    }
    return "unknown";
}

/// Whether a saga in `status` has ended (completed, rolled_back or failed).
[[nodiscard]] constexpr bool is_finished(saga_status status) noexcept {
    return status == saga_status::completed || status == saga_status::rolled_back || status == saga_status::failed;
}

/// Which half of a step an attempt, a request or a failure belongs to.
enum class saga_phase : std::uint8_t {
    action,       ///< the step's forward local transaction
    compensation, ///< the transaction that undoes it
};

/// The names of the wire convention (see the file comment).
namespace saga_wire {
/// Header of a failure reply: the reason, as text (the orchestrator's convention too).
inline constexpr std::string_view error_header = service_error_header;
/// Header of a failure reply (true) when the failure is transient: worth retrying.
inline constexpr std::string_view transient_header = "x-saga-transient";
/// Request header: the saga id (also the correlation_id).
inline constexpr std::string_view id_header = "x-saga-id";
/// Request header: the step's name.
inline constexpr std::string_view step_header = "x-saga-step";
/// Request header: "action" or "compensation".
inline constexpr std::string_view phase_header = "x-saga-phase";
/// Request header: the attempt, 1 for the first.
inline constexpr std::string_view attempt_header = "x-saga-attempt";
/// Reply header (saga_participant): the message_id of the request it answers.
inline constexpr std::string_view request_header = "x-saga-request";

/// The message_id of `step`'s action (or compensation) in saga `saga_id`.
[[nodiscard]] inline std::string message_id(std::string_view saga_id, std::string_view step, saga_phase phase) {
    std::string id;
    id.reserve(saga_id.size() + step.size() + 12);
    id.append(saga_id).append("/").append(step);
    if (phase == saga_phase::compensation) id.append("/compensate");
    return id;
}

/// The phase a request's x-saga-phase header names (action when it has none).
[[nodiscard]] inline saga_phase phase_of(const properties& request) noexcept {
    const std::string* phase = request.headers.find_string(phase_header);
    return phase != nullptr && *phase == "compensation" ? saga_phase::compensation : saga_phase::action;
}

/// Whether `reply` reports a failure, and why: its x-error header's text (empty if it is
/// not a string), or nothing for a success.
[[nodiscard]] inline std::optional<std::string> failure_of(const properties& reply) {
    if (!reply.headers.contains(error_header)) return std::nullopt;
    const std::string* reason = reply.headers.find_string(error_header);
    return reason != nullptr ? *reason : std::string();
}

/// Whether failure reply `reply` says it is transient (see the file comment).
[[nodiscard]] inline bool is_transient(const properties& reply) noexcept {
    const field_value* flag = reply.headers.find(transient_header);
    return flag != nullptr && flag->get_if<bool>() != nullptr && *flag->get_if<bool>();
}
} // namespace saga_wire

/// What an action or a compensation produced: a result, or the reason it failed.
/// @code
/// warren::saga_outcome<> ok = std::string("reserved 2");  // success, with its result
/// auto no = warren::saga_outcome<>::failure("out of stock");
/// @endcode
/// Thread safety: a value type.
template <class Body = std::string>
class saga_outcome {
public:
    /// A success whose result is `Body{}`.
    saga_outcome() = default;
    /// A success whose result is `result`.
    template <class T>
        requires(!std::same_as<std::remove_cvref_t<T>, saga_outcome> && std::constructible_from<Body, T &&>)
    saga_outcome(T&& result) : result_(std::forward<T>(result)) {} // NOLINT: implicit, so a handler may return a body

    /// A failure for `reason`: an answer, not retried unless the operation says
    /// retry_answers.
    [[nodiscard]] static saga_outcome failure(std::string reason) {
        saga_outcome out;
        out.failed_ = true;
        out.error_ = std::move(reason);
        return out;
    }
    /// A failure for `reason` that is worth retrying (a timeout, an outage, an exception).
    [[nodiscard]] static saga_outcome transient_failure(std::string reason) {
        saga_outcome out = failure(std::move(reason));
        out.transient_ = true;
        return out;
    }

    /// Whether it succeeded.
    [[nodiscard]] bool ok() const noexcept { return !failed_; }
    /// The result (Body{} for a failure).
    [[nodiscard]] const Body& result() const& noexcept { return result_; }
    /// The result, to move from.
    [[nodiscard]] Body& result() & noexcept { return result_; }
    /// Why it failed (empty for a success).
    [[nodiscard]] const std::string& error() const noexcept { return error_; }
    /// Whether it is a failure worth retrying (transient_failure).
    [[nodiscard]] bool transient() const noexcept { return transient_; }

private:
    Body result_{};
    std::string error_;
    bool failed_ = false;
    bool transient_ = false;
};

/// What an action or a compensation sees: which saga, step and attempt, the saga's input,
/// the results of the steps completed so far and, for a compensation, its action's result.
/// The references stay valid while the function runs.
template <class Body = std::string>
struct saga_step_context {
    const std::string& saga_id;
    const std::string& step;
    saga_phase phase;
    /// 1 for the first attempt.
    std::uint32_t attempt;
    /// What the saga was started with.
    const Body& input;
    /// The steps whose action succeeded, in order, with their results.
    const std::vector<std::pair<std::string, Body>>& results;
    /// For a compensation: the result of the action it undoes. For an action: nullptr.
    const Body* action_result;

    /// The result of the completed step `name`, or nullptr.
    [[nodiscard]] const Body* result_of(std::string_view name) const noexcept {
        for (const auto& [done, result] : results) {
            if (done == name) return &result;
        }
        return nullptr;
    }
};

/// One action or compensation: a request to a participant (by request/reply, with a
/// timeout per attempt), or a local function; either retried by `retry` when an attempt
/// fails transiently: a timeout, an unroutable request, a transient failure reply, a
/// local function's exception or saga_outcome::transient_failure. A failure answer (an
/// error reply, saga_outcome::failure) ends the operation at once, unless
/// `retry_answers`.
///
/// A request's body is the saga's input for an action and the action's result for a
/// compensation, unless `body` makes another from the context. A local function returns a
/// saga_outcome, a value convertible to Body (a success) or nothing (a success with Body{});
/// an exception it throws is a transient failure whose reason is what() (with exceptions
/// enabled).
/// @code
/// auto reserve = warren::saga_operation<>::request("", "inventory", std::chrono::seconds(2),
///                                                   warren::retry_policy::fixed(3, std::chrono::milliseconds(100)));
/// auto log = warren::saga_operation<>::local([](const warren::saga_step_context<>& c) {
///     return "logged " + c.saga_id;
/// });
/// @endcode
/// Thread safety: a value type; its functions run on the thread that drives the saga.
template <class Body = std::string>
struct saga_operation {
    using context = saga_step_context<Body>;
    using local_function = std::function<saga_outcome<Body>(const context&)>;
    using body_function = std::function<Body(const context&)>;

    /// What it does.
    enum class kind : std::uint8_t {
        none,    ///< nothing (a step with nothing to undo)
        request, ///< a request to `exchange` with `routing_key`
        local,   ///< `function`, run in place
    };

    kind how = kind::none;
    /// A request's exchange ("" is the default exchange).
    std::string exchange{};
    /// A request's routing key (with the default exchange: the participant's queue).
    std::string routing_key{};
    /// A request's body from the context; empty: the default (see the class).
    body_function body{};
    /// A local operation.
    local_function function{};
    /// How long a request's attempt waits for its reply, on the broker's clock. Local
    /// functions run to the end.
    clock::duration timeout = std::chrono::seconds(30);
    /// Attempts and the delays between them.
    retry_policy retry{};
    /// Whether failure answers are retried too (by default only transient failures are:
    /// a participant that refused would refuse again, or, deduplicating, answer the same).
    bool retry_answers = false;

    /// A request to `routing_key` through `exchange`, `timeout` per attempt, retried by
    /// `retry`, its body made by `make_body` (empty: the default).
    [[nodiscard]] static saga_operation request(std::string exchange_name, std::string key, clock::duration wait,
                                                retry_policy retries = {}, body_function make_body = {}) {
        saga_operation op;
        op.how = kind::request;
        op.exchange = std::move(exchange_name);
        op.routing_key = std::move(key);
        op.body = std::move(make_body);
        op.timeout = wait;
        op.retry = retries;
        return op;
    }

    /// A local function `fn(const saga_step_context<Body>&)`, retried by `retry`.
    template <class Fn>
        requires std::invocable<Fn&, const context&>
    [[nodiscard]] static saga_operation local(Fn fn, retry_policy retries = {}) {
        saga_operation op;
        op.how = kind::local;
        op.function = wrap(std::move(fn));
        op.retry = retries;
        return op;
    }

    /// Whether it does something.
    [[nodiscard]] bool empty() const noexcept { return how == kind::none; }

private:
    template <class Fn>
    static local_function wrap(Fn fn) {
        return [fn = std::move(fn)](const context& c) mutable -> saga_outcome<Body> {
            using returned = std::invoke_result_t<Fn&, const context&>;
            if constexpr (std::is_void_v<returned>) {
                fn(c);
                return saga_outcome<Body>();
            } else {
                return saga_outcome<Body>(fn(c));
            }
        };
    }
};

/// One step of a saga: its name (unique in the saga), its action and its compensation
/// (empty: nothing to undo, e.g. the saga's last, pivot step or a read).
template <class Body = std::string>
struct saga_step {
    std::string name;
    saga_operation<Body> action;
    saga_operation<Body> compensation{};
};

/// Why a step (or a compensation) failed for good: the step, the phase, the reason of its
/// last attempt and how many attempts it made.
struct saga_failure {
    std::string step;
    saga_phase phase = saga_phase::action;
    std::string what;
    std::uint32_t attempts = 0;
};

/// One attempt of an action or a compensation, as it started.
struct saga_attempt {
    std::string step;
    saga_phase phase = saga_phase::action;
    /// 1 for the first.
    std::uint32_t number = 0;
    /// When it started, on the broker's clock.
    clock::time_point at{};
};

/// What a saga did, so far or in the end.
/// Thread safety: a value type (saga_orchestrator::result returns a copy).
template <class Body = std::string>
struct saga_result {
    std::string id;
    saga_status status = saga_status::running;
    /// The steps whose action succeeded, in order, with their results: the compensations
    /// that may run, each registered only once its action succeeded.
    std::vector<std::pair<std::string, Body>> results;
    /// The steps compensated, in the order their compensations succeeded (the reverse of
    /// `results`, less those without a compensation and those whose compensation failed).
    std::vector<std::string> compensated;
    /// The failure that made the saga compensate: kept whatever the compensations did.
    std::optional<saga_failure> error;
    /// Compensations that failed after their retries.
    std::vector<saga_failure> compensation_failures;
    /// Every attempt of every action and compensation, in the order they started.
    std::vector<saga_attempt> attempts;

    /// Whether the saga has ended.
    [[nodiscard]] bool finished() const noexcept { return is_finished(status); }
};

/// What a saga definition tells about its sagas as they go. Each hook is optional; all run
/// on the thread that drives the saga (see saga_orchestrator), with no lock held.
template <class Body = std::string>
struct saga_hooks {
    /// The saga started (before its first action).
    std::function<void(const std::string& saga_id)> started{};
    /// A step's action succeeded with `result`.
    std::function<void(const std::string& saga_id, const std::string& step, const Body& result)> step_completed{};
    /// A step failed for good: the compensations start.
    std::function<void(const std::string& saga_id, const saga_failure& error)> compensating{};
    /// A step's compensation succeeded.
    std::function<void(const std::string& saga_id, const std::string& step)> step_compensated{};
    /// Every action succeeded.
    std::function<void(const saga_result<Body>&)> completed{};
    /// A step failed and every compensation succeeded.
    std::function<void(const saga_result<Body>&)> rolled_back{};
    /// A step failed and some compensation failed too.
    std::function<void(const saga_result<Body>&)> failed{};
};

/// A saga's definition: its name, its steps in order and its hooks.
/// @code
/// warren::saga_definition<> place_order("place-order");
/// place_order.step("reserve", warren::saga_operation<>::request("", "inventory", 2s),
///                             warren::saga_operation<>::request("", "inventory", 2s))
///            .step("charge", warren::saga_operation<>::request("", "payment", 2s));
/// place_order.hooks.rolled_back = [](const warren::saga_result<>& r) { ... };
/// @endcode
/// Thread safety: a value type; read by the sagas started from it, so it must outlive them
/// and not change meanwhile.
template <class Body = std::string>
class saga_definition {
public:
    using body_type = Body;

    /// A definition named `name`, with no steps.
    explicit saga_definition(std::string name) : name_(std::move(name)) {}

    /// Appends a step. Step names are unique within a saga (they make message ids).
    saga_definition& step(std::string name, saga_operation<Body> action, saga_operation<Body> compensation = {}) {
        WARREN_ASSERT(!action.empty(), "a saga step needs an action");
        for ([[maybe_unused]] const auto& s : steps_) WARREN_ASSERT(s.name != name, "saga step names must be unique");
        steps_.push_back({std::move(name), std::move(action), std::move(compensation)});
        return *this;
    }

    /// Its name.
    [[nodiscard]] const std::string& name() const noexcept { return name_; }
    /// Its steps, in order.
    [[nodiscard]] const std::vector<saga_step<Body>>& steps() const noexcept { return steps_; }

    /// What it tells as its sagas go.
    saga_hooks<Body> hooks{};

private:
    std::string name_;
    std::vector<saga_step<Body>> steps_;
};

/// How a saga_orchestrator is made.
struct saga_orchestrator_options {
    /// Whether the reply queue's consumer is synchronous (as rpc_client's: synchronous on
    /// concurrent_broker, dispatched on warren::broker, by default).
    rpc_replies replies = rpc_replies::by_policy;
};

/// The coordinator of orchestrated sagas: runs each saga's steps in order, by
/// request/reply to the participants' queues or by local functions, and on a step's
/// failure runs the compensations of the completed steps in reverse order, each receiving
/// its action's result. A step fails on a failure answer (an error reply,
/// saga_outcome::failure) at once, or on transient failures (a timeout, an unroutable
/// request, a transient reply, a local function's exception) once its retry_policy has
/// no attempt left. A compensation that fails is retried by its
/// own policy; if it still fails it is reported (saga_result::compensation_failures), the
/// earlier steps are still compensated, and the saga ends failed with its original error
/// kept (saga_result::error).
///
/// Requests follow the wire convention of this header (see the file comment); the
/// coordinator owns an exclusive, server-named reply queue. A saga has at most one request
/// outstanding; a reply is taken for it when its correlation_id names the saga, the saga
/// awaits a reply, and its x-saga-request header (if any) names the request awaited;
/// otherwise it is dropped and counted (late_replies, unknown_replies). A reply to an
/// earlier attempt of the same request is taken: the participant deduplicates, so it is the
/// same operation's answer.
///
/// Asynchronous: start() runs the saga up to its first request; replies are taken where
/// the reply queue is consumed (broker.dispatch() on warren::broker, or inside the
/// participant's publish with synchronous replies); time is applied by poll(), which fails
/// the attempts past their timeout and starts the retries that are due. Timeouts and
/// retry delays are on the broker's clock (basic_broker::time_source()), so on a
/// warren::manual_clock every attempt's time is exact. next_due() says when poll() has
/// work next. A retry whose delay is zero runs at once.
///
/// The saga logic (local functions, request bodies, hooks, publishing) runs on one thread
/// at a time: whichever thread brings an event (start, a reply, poll) while no other is
/// running the logic runs it, and takes over the events that others bring meanwhile, so
/// a synchronous participant that replies inside the request's publish is handled after
/// that publish returns, not inside it. An exception from a hook does not stop its saga:
/// the first one is rethrown once the events waiting are handled, out of what was driving
/// them (start, poll, or the reply's consumer: dispatch() or the broker's error handler).
/// A request body function that throws fails its attempt (transiently), as a local
/// function that throws does.
/// @code
/// warren::manual_clock time;
/// warren::broker broker(time);
/// warren::saga_orchestrator<warren::broker> sagas(broker);
/// (void)sagas.start(place_order, "order-1", "2 books");
/// broker.dispatch();                       // participants answer, the saga goes on
/// time.advance(std::chrono::seconds(2));
/// sagas.poll();                            // timeouts and retries due by now
/// auto r = sagas.result("order-1");        // r->status, r->error, r->compensated, ...
/// @endcode
/// Thread safety: with concurrent_broker every member is thread-safe except the destructor
/// (no member may be running); with warren::broker, owner thread only. Destroying it ends
/// its subscription first (waiting for a reply callback on another thread), deletes the
/// reply queue, then drops the sagas with no hook run. The broker, and each definition while its
/// sagas run, must outlive it.
template <class Broker>
    requires std::copy_constructible<typename Broker::body_type>
class saga_orchestrator {
public:
    using broker_type = Broker;
    using message_type = typename Broker::message_type;
    using body_type = typename Broker::body_type;
    using delivery = typename Broker::delivery;
    using definition = saga_definition<body_type>;
    using result_type = saga_result<body_type>;
    using outcome = saga_outcome<body_type>;

    /// Declares the reply queue and subscribes to it.
    explicit saga_orchestrator(Broker& owner, saga_orchestrator_options options = {})
        : broker_(owner), clock_(owner.time_source()), reply_queue_(owner.declare_queue("", {.exclusive = true})) {
        const bool synchronous = options.replies == rpc_replies::synchronous ||
                                 (options.replies == rpc_replies::by_policy && Broker::policy_type::thread_safe);
        subscription_ = broker_.subscribe(
            reply_queue_, [this](delivery& d) { on_reply(d); }, {.synchronous = synchronous});
    }
    /// Ends the subscription, drops the sagas and deletes the reply queue.
    ~saga_orchestrator() {
        subscription_.release();
        WARREN_TRY {
            (void)broker_.delete_queue(reply_queue_);
        }
        WARREN_CATCH_ALL { // nothing to do about it in a destructor; the queue stays
        }
    }
    saga_orchestrator(const saga_orchestrator&) = delete;
    saga_orchestrator& operator=(const saga_orchestrator&) = delete;

    /// Starts saga `id` of `def` with `input`: the started hook, then the first step (a
    /// local one runs here; a request is published here). Returns false, doing nothing, if
    /// a saga of that id is known (running or finished and not forgotten): starting twice
    /// is harmless. `def` must outlive the saga and have at least one step. Thread-safe on
    /// concurrent_broker.
    [[nodiscard]] bool start(const definition& def, std::string id, body_type input) {
        WARREN_ASSERT(!def.steps().empty(), "a saga needs at least one step");
        WARREN_ASSERT(!id.empty(), "a saga needs an id");
        {
            std::lock_guard guard(lock_);
            auto [it, inserted] = sagas_.try_emplace(id);
            if (!inserted) return false;
            instance& saga = it->second;
            saga.def = &def;
            saga.input = std::move(input);
            saga.state.id = id;
            events_.push_back({event::kind::begin, std::move(id), 0, std::nullopt});
        }
        drain();
        return true;
    }

    /// Applies time: fails the attempts whose reply is overdue and starts the retries that
    /// are due, on the broker's clock; returns how many timers fired. Thread-safe on
    /// concurrent_broker.
    std::size_t poll() {
        std::size_t fired = 0;
        {
            std::lock_guard guard(lock_);
            fired = take_due(clock_.now());
        }
        drain();
        return fired;
    }

    /// When poll() has work next (the earliest timeout or retry), or nothing. Thread-safe
    /// on concurrent_broker.
    [[nodiscard]] std::optional<clock::time_point> next_due() const {
        std::lock_guard guard(lock_);
        if (timers_.empty()) return std::nullopt;
        return timers_.begin()->first.first;
    }

    /// A copy of what saga `id` did so far, or nothing if it is unknown. Thread-safe on
    /// concurrent_broker.
    [[nodiscard]] std::optional<result_type> result(std::string_view id) const {
        std::lock_guard guard(lock_);
        const auto it = sagas_.find(id);
        if (it == sagas_.end()) return std::nullopt;
        return it->second.state;
    }
    /// Where saga `id` is, or nothing if it is unknown. Thread-safe on concurrent_broker.
    [[nodiscard]] std::optional<saga_status> status(std::string_view id) const {
        std::lock_guard guard(lock_);
        const auto it = sagas_.find(id);
        if (it == sagas_.end()) return std::nullopt;
        return it->second.state.status;
    }
    /// Sagas running or compensating. Thread-safe on concurrent_broker.
    [[nodiscard]] std::size_t active() const {
        std::lock_guard guard(lock_);
        return active_;
    }
    /// Forgets finished saga `id` (its id may then start again); returns false if it is
    /// unknown or has not finished. Participants remember the message ids of its requests,
    /// so a saga started again under the same id is answered from their memory: give a new
    /// run a new id. Thread-safe on concurrent_broker.
    bool forget(std::string_view id) {
        std::optional<instance> dropped; // destroyed with no lock held
        std::lock_guard guard(lock_);
        const auto it = sagas_.find(id);
        if (it == sagas_.end() || !it->second.state.finished()) return false;
        dropped.emplace(std::move(it->second));
        sagas_.erase(it);
        return true;
    }

    /// The reply queue's name (reply_to of every request). Thread-safe.
    [[nodiscard]] const std::string& reply_queue() const noexcept { return reply_queue_; }
    /// Attempts failed by their timeout so far. Thread-safe on concurrent_broker.
    [[nodiscard]] std::size_t timeouts() const {
        std::lock_guard guard(lock_);
        return timeouts_;
    }
    /// Replies dropped because their saga awaited no reply, or another request's.
    /// Thread-safe on concurrent_broker.
    [[nodiscard]] std::size_t late_replies() const {
        std::lock_guard guard(lock_);
        return late_;
    }
    /// Replies dropped because their correlation_id names no saga (or they had none).
    /// Thread-safe on concurrent_broker.
    [[nodiscard]] std::size_t unknown_replies() const {
        std::lock_guard guard(lock_);
        return unknown_;
    }

private:
    using lock_type = std::conditional_t<Broker::policy_type::thread_safe, std::mutex, detail::rpc_null_lock>;
    using timer_key = std::pair<clock::time_point, std::uint64_t>;
    using context = saga_step_context<body_type>;

    struct instance {
        const definition* def = nullptr;
        body_type input{};
        result_type state;
        /// Forwards: the step running. Compensating: how many of state.results are left to
        /// compensate (the one running is state.results[undo - 1]).
        std::size_t step = 0;
        std::size_t undo = 0;
        std::uint32_t attempt = 0; ///< of the operation running
        std::uint64_t op = 0;      ///< the operation running; events of others are stale
        bool awaiting = false;     ///< a request's reply
        std::string awaited;       ///< that request's message_id
        std::optional<timer_key> timer;
    };
    struct timer {
        std::string saga;
        std::uint64_t op;
        bool timeout; ///< else a retry
    };
    struct event {
        enum class kind : std::uint8_t { begin, outcome, retry } what;
        std::string saga;
        std::uint64_t op;
        std::optional<outcome> result;
    };
    /// What an operation is, read from the instance under the lock.
    struct operation_ref {
        const saga_operation<body_type>* op;
        const std::string* step;
        saga_phase phase;
        const body_type* action_result;
    };

    // -- events, with the lock held ------------------------------------------------------

    /// Moves the timers due at `now` to events; lock held.
    std::size_t take_due(clock::time_point now) {
        std::size_t fired = 0;
        while (!timers_.empty() && timers_.begin()->first.first <= now) {
            auto node = timers_.extract(timers_.begin());
            ++fired;
            const timer& t = node.mapped();
            const auto it = sagas_.find(t.saga);
            if (it == sagas_.end() || it->second.op != t.op) continue;
            instance& saga = it->second;
            saga.timer.reset();
            if (t.timeout) {
                if (!saga.awaiting) continue;
                saga.awaiting = false;
                ++timeouts_;
                events_.push_back({event::kind::outcome, t.saga, t.op,
                                   outcome::transient_failure("no reply to " + detail::quoted(saga.awaited) + " within " +
                                                    duration_text(current(saga).op->timeout))});
            } else {
                events_.push_back({event::kind::retry, t.saga, t.op, std::nullopt});
            }
        }
        return fired;
    }

    void set_timer(instance& saga, clock::time_point at, bool is_timeout) {
        const timer_key key{at, ++timer_seq_};
        timers_.emplace(key, timer{saga.state.id, saga.op, is_timeout});
        saga.timer = key;
    }

    void cancel_timer(instance& saga) {
        if (saga.timer) timers_.erase(*saga.timer);
        saga.timer.reset();
    }

    /// The operation saga `saga` is at; lock held.
    static operation_ref current(const instance& saga) {
        const auto& steps = saga.def->steps();
        if (saga.state.status == saga_status::running) {
            const auto& s = steps[saga.step];
            return {&s.action, &s.name, saga_phase::action, nullptr};
        }
        const auto& done = saga.state.results[saga.undo - 1];
        for (const auto& s : steps) {
            if (s.name == done.first) return {&s.compensation, &s.name, saga_phase::compensation, &done.second};
        }
        WARREN_ASSERT(false, "a completed step is not in its saga's definition");
        return {nullptr, nullptr, saga_phase::compensation, nullptr};
    }

    // -- the saga logic, on the draining thread ------------------------------------------

    /// Runs the events, unless another thread (or a caller up this thread's stack) is
    /// running them: then that one runs these too.
    void drain() {
        {
            std::lock_guard guard(lock_);
            if (draining_) return;
            draining_ = true;
        }
        // An exception out of handle() (an allocation's) leaves the events for the next drain.
        struct stop_draining {
            saga_orchestrator& self;
            bool done = false;
            ~stop_draining() {
                if (done) return;
                std::lock_guard guard(self.lock_);
                self.draining_ = false;
            }
        } stop{*this};
        for (;;) {
            std::optional<event> e;
            {
                std::lock_guard guard(lock_);
                if (events_.empty()) {
                    draining_ = false;
                    stop.done = true;
                    break;
                }
                e.emplace(std::move(events_.front()));
                events_.pop_front();
            }
            handle(*e);
        }
        // Only the draining thread touches hook_error_; the lock handed it over.
        if (hook_error_) std::rethrow_exception(std::exchange(hook_error_, nullptr));
    }

    void handle(event& e) {
        std::unique_lock guard(lock_);
        const auto it = sagas_.find(e.saga);
        if (it == sagas_.end()) return;
        instance& saga = it->second;
        switch (e.what) {
        case event::kind::begin:
            ++active_;
            call_hook(saga.def->hooks.started, guard, saga.state.id);
            begin_operation(saga, guard);
            return;
        case event::kind::retry:
            if (saga.op == e.op) begin_operation(saga, guard);
            return;
        case event::kind::outcome:
            if (saga.op == e.op) finish_operation(saga, std::move(*e.result), guard);
            return;
        }
    }

    /// Starts the next attempt of the operation the saga is at. Lock held on entry and exit,
    /// released around user code and the publish.
    void begin_operation(instance& saga, std::unique_lock<lock_type>& guard) {
        const operation_ref now_at = current(saga);
        const saga_operation<body_type>& op = *now_at.op;
        const std::uint64_t id = ++saga.op;
        const std::uint32_t attempt = ++saga.attempt;
        const clock::time_point started = clock_.now();
        saga.state.attempts.push_back({*now_at.step, now_at.phase, attempt, started});
        // What the context refers to changes only on this thread, which is here: reading it
        // with the lock released is safe, and a query copying it meanwhile only reads too.
        const context ctx{saga.state.id, *now_at.step, now_at.phase, attempt, saga.input, saga.state.results,
                          now_at.action_result};
        if (op.how == saga_operation<body_type>::kind::local) {
            guard.unlock();
            outcome out = run_local(op, ctx);
            guard.lock();
            events_.push_back({event::kind::outcome, saga.state.id, id, std::move(out)});
            return;
        }
        std::string message_id = saga_wire::message_id(saga.state.id, *now_at.step, now_at.phase);
        saga.awaiting = true;
        saga.awaited = message_id;
        set_timer(saga, deadline_after(started, op.timeout), true);
        guard.unlock();
        std::optional<std::string> failed = publish_request(op, ctx, std::move(message_id));
        guard.lock();
        if (failed && saga.op == id && saga.awaiting) {
            saga.awaiting = false;
            cancel_timer(saga);
            events_.push_back(
                {event::kind::outcome, saga.state.id, id, outcome::transient_failure(std::move(*failed))});
        }
    }

    static outcome run_local(const saga_operation<body_type>& op, const context& ctx) {
#if WARREN_EXCEPTIONS
        try {
            return op.function(ctx);
        } catch (const std::exception& ex) {
            return outcome::transient_failure(ex.what());
        } catch (...) {
            return outcome::transient_failure("unknown exception");
        }
#else
        return op.function(ctx);
#endif
    }

    /// Publishes a request; the reason it failed, if it did (the body function threw, the
    /// request was unroutable or refused). No lock held.
    std::optional<std::string> publish_request(const saga_operation<body_type>& op, const context& ctx,
                                               std::string message_id) {
#if WARREN_EXCEPTIONS
        try {
            return send_request(op, ctx, std::move(message_id));
        } catch (const std::exception& ex) {
            return std::string(ex.what());
        } catch (...) {
            return std::string("unknown exception");
        }
#else
        return send_request(op, ctx, std::move(message_id));
#endif
    }

    std::optional<std::string> send_request(const saga_operation<body_type>& op, const context& ctx,
                                            std::string message_id) {
        message_type request{.routing_key = op.routing_key};
        if (op.body) {
            request.body = op.body(ctx);
        } else {
            request.body = ctx.action_result != nullptr ? *ctx.action_result : ctx.input;
        }
        auto& p = request.properties;
        p.message_id = std::move(message_id);
        p.correlation_id = ctx.saga_id;
        p.reply_to = reply_queue_;
        p.headers.set(saga_wire::id_header, ctx.saga_id);
        p.headers.set(saga_wire::step_header, ctx.step);
        p.headers.set(saga_wire::phase_header, ctx.phase == saga_phase::action ? "action" : "compensation");
        p.headers.set(saga_wire::attempt_header, static_cast<std::int64_t>(ctx.attempt));
        if (broker_.publish(op.exchange, std::move(request)) == 0) {
            return "request to exchange " + detail::quoted(op.exchange) + " with routing key " +
                   detail::quoted(op.routing_key) + " was unroutable";
        }
        return std::nullopt;
    }

    /// Takes an attempt's outcome: the saga goes on, retries, or turns to compensating.
    /// Lock held on entry and exit.
    void finish_operation(instance& saga, outcome out, std::unique_lock<lock_type>& guard) {
        const operation_ref now_at = current(saga);
        const auto& hooks = saga.def->hooks;
        const std::string& id = saga.state.id;
        if (!out.ok()) {
            const retry_policy& retry = now_at.op->retry;
            if ((out.transient() || now_at.op->retry_answers) && retry.allows_retry(saga.attempt)) {
                // Each operation its own jitter seed, so that sagas retrying together spread out.
                const clock::duration delay = retry.delay_before_retry(
                    saga.attempt, std::hash<std::string>{}(saga_wire::message_id(id, *now_at.step, now_at.phase)));
                if (delay <= clock::duration::zero()) {
                    events_.push_back({event::kind::retry, id, saga.op, std::nullopt});
                } else {
                    set_timer(saga, deadline_after(clock_.now(), delay), false);
                }
                return;
            }
            saga_failure failure{*now_at.step, now_at.phase, out.error(), saga.attempt};
            saga.attempt = 0;
            saga.awaited.clear();
            if (now_at.phase == saga_phase::action) {
                saga.state.error = failure;
                saga.state.status = saga_status::compensating;
                saga.undo = saga.state.results.size();
                call_hook(hooks.compensating, guard, id, failure);
            } else {
                saga.state.compensation_failures.push_back(std::move(failure));
                --saga.undo;
            }
            next_compensation(saga, guard);
            return;
        }
        saga.attempt = 0;
        saga.awaited.clear();
        if (now_at.phase == saga_phase::action) {
            saga.state.results.emplace_back(*now_at.step, std::move(out.result()));
            ++saga.step;
            const auto& done = saga.state.results.back();
            call_hook(hooks.step_completed, guard, id, done.first, done.second);
            if (saga.step == saga.def->steps().size()) {
                end(saga, saga_status::completed, guard);
            } else {
                begin_operation(saga, guard);
            }
            return;
        }
        saga.state.compensated.push_back(*now_at.step);
        --saga.undo;
        call_hook(hooks.step_compensated, guard, id, *now_at.step);
        next_compensation(saga, guard);
    }

    /// Starts the next compensation, skipping steps with nothing to undo, or ends the saga.
    void next_compensation(instance& saga, std::unique_lock<lock_type>& guard) {
        while (saga.undo > 0 && current(saga).op->empty()) --saga.undo;
        if (saga.undo > 0) {
            begin_operation(saga, guard);
            return;
        }
        end(saga, saga.state.compensation_failures.empty() ? saga_status::rolled_back : saga_status::failed, guard);
    }

    void end(instance& saga, saga_status status, std::unique_lock<lock_type>& guard) {
        saga.state.status = status;
        --active_;
        const auto& hooks = saga.def->hooks;
        const auto& hook = status == saga_status::completed     ? hooks.completed
                           : status == saga_status::rolled_back ? hooks.rolled_back
                                                                 : hooks.failed;
        if (!hook) return;
        // A copy: once finished, the saga may be forgotten by another thread.
        const result_type copy = saga.state;
        call_hook(hook, guard, copy);
    }

    /// Runs `hook(args...)` with the lock released. What it throws is kept for the end of
    /// the drain, so that a throwing hook does not stop its saga halfway.
    template <class Hook, class... Args>
    void call_hook(const Hook& hook, std::unique_lock<lock_type>& guard, const Args&... args) {
        if (!hook) return;
        guard.unlock();
        WARREN_TRY {
            hook(args...);
        }
        WARREN_CATCH_ALL {
            if (!hook_error_) hook_error_ = std::current_exception();
        }
        guard.lock();
    }

    // -- replies -------------------------------------------------------------------------

    void on_reply(delivery& d) {
        const auto& props = d.properties();
        {
            std::lock_guard guard(lock_);
            // A reply after its deadline is late: the timeout fails the attempt first.
            (void)take_due(clock_.now());
            const auto it = props.correlation_id ? sagas_.find(*props.correlation_id) : sagas_.end();
            if (it == sagas_.end()) {
                ++unknown_;
            } else {
                instance& saga = it->second;
                const std::string* answers = props.headers.find_string(saga_wire::request_header);
                if (!saga.awaiting || (answers != nullptr && *answers != saga.awaited)) {
                    ++late_;
                } else {
                    saga.awaiting = false;
                    cancel_timer(saga);
                    auto failure = saga_wire::failure_of(props);
                    outcome out = !failure                         ? outcome(d.body())
                                  : saga_wire::is_transient(props) ? outcome::transient_failure(std::move(*failure))
                                                                   : outcome::failure(std::move(*failure));
                    events_.push_back({event::kind::outcome, saga.state.id, saga.op, std::move(out)});
                }
            }
        }
        drain();
    }

    static clock::time_point deadline_after(clock::time_point now, clock::duration wait) noexcept {
        if (wait <= clock::duration::zero()) return now;
        if (wait > clock::time_point::max() - now) return clock::time_point::max();
        return now + wait;
    }

    static std::string duration_text(clock::duration d) {
        using std::chrono::milliseconds;
        if (d % milliseconds(1) == clock::duration::zero()) {
            return std::to_string(std::chrono::duration_cast<milliseconds>(d).count()) + " ms";
        }
        return std::to_string(d.count()) + " ns";
    }

    Broker& broker_;
    const clock& clock_;
    std::string reply_queue_;
    mutable lock_type lock_; // guards what follows, up to the subscription
    std::map<std::string, instance, std::less<>> sagas_; // a map: instances stay put as others come and go
    std::map<timer_key, timer> timers_;
    std::deque<event> events_;
    bool draining_ = false;
    std::exception_ptr hook_error_; // the draining thread's alone
    std::uint64_t timer_seq_ = 0;
    std::size_t active_ = 0;
    std::size_t timeouts_ = 0;
    std::size_t late_ = 0;
    std::size_t unknown_ = 0;
    typename Broker::subscription subscription_; // last: ends before the members above
};

} // namespace warren
