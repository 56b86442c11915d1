#pragma once
/// @file patterns/orchestration_values.hpp
/// The value types of orchestration (patterns/orchestrator.hpp): what a call, a sequence
/// step and a scatter-gather are made of (call_options, basic_request, basic_step,
/// gather_options), and how they end (call_status, attempt_record, call_result,
/// sequence_result, gather_result). Plain values, no broker needed.

#include <algorithm>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../clock.hpp"
#include "../config.hpp"
#include "../error.hpp"
#include "../fwd.hpp"
#include "../message.hpp"
#include "retry_policy.hpp"

namespace warren {

/// How a call ended.
enum class call_status : std::uint8_t {
    replied,       ///< the service answered, without `x-error`
    service_error, ///< the service answered with an error reply (see service_error.hpp)
    timed_out,     ///< no reply in time on the last attempt, or before its gather's deadline
    unroutable,    ///< no queue took the last attempt's request (the service's queue is missing)
    cancelled,     ///< given up unfinished: its gather had already reached its quorum
};

/// One attempt of a call: when it was sent (on the broker's clock) and how it ended.
struct attempt_record {
    clock::time_point sent_at;
    call_status outcome = call_status::timed_out;
};

/// How one call is made.
struct call_options {
    /// How long each attempt waits for its reply, on the broker's clock.
    clock::duration timeout = std::chrono::seconds(5);
    /// Attempts and the delays between them. A timed-out or unroutable attempt is retried
    /// while the policy allows; an error reply only with retry_service_errors.
    retry_policy retry = retry_policy::none();
    /// Whether an error reply (a service's answer, `x-error`) is retried too. Off by
    /// default: the service refused the request, and the same request would be refused
    /// again.
    bool retry_service_errors = false;
    /// The exchange the request goes to; the default exchange routes it to the queue named
    /// by the service.
    std::string exchange{};
    /// The seed of the retry policy's jitter; by default a hash of the call's message_id,
    /// so that calls spread while each one's delays stay reproducible.
    std::optional<std::uint64_t> jitter_seed{};
};

/// The outcome of a call: the reply, or the failure that ended it, with the attempts it
/// took. An error reply is both a reply (reply() is its message) and a failure.
/// @code
/// auto r = orchestrator.call_and_wait("payment", "42", {.timeout = 100ms});
/// if (r.ok()) use(r.reply().body); else std::cout << r.error().what(); // names service, attempts
/// @endcode
/// Thread safety: a value type.
template <class Message = message>
class call_result {
public:
    /// Made by the orchestrator: `reply` for replied and service_error, `failure` for
    /// every status but replied.
    call_result(std::string service, std::string message_id, call_status status, std::vector<attempt_record> history,
                std::optional<Message> reply, std::optional<warren::error> failure)
        : service_(std::move(service)), message_id_(std::move(message_id)), status_(status),
          history_(std::move(history)), reply_(std::move(reply)), failure_(std::move(failure)) {
        WARREN_ASSERT(status_ == call_status::replied || failure_, "call_result: a failure needs its error");
    }

    /// Whether the service answered, without an error.
    [[nodiscard]] bool ok() const noexcept { return status_ == call_status::replied; }
    /// How the call ended.
    [[nodiscard]] call_status status() const noexcept { return status_; }
    /// The service called (the routing key of its requests).
    [[nodiscard]] const std::string& service() const noexcept { return service_; }
    /// The message_id every attempt of the call carried.
    [[nodiscard]] const std::string& message_id() const noexcept { return message_id_; }
    /// Attempts sent (0 for a call of a gather that ended before it started).
    [[nodiscard]] std::uint32_t attempts() const noexcept { return static_cast<std::uint32_t>(history_.size()); }
    /// Each attempt: when it went out and how it ended.
    [[nodiscard]] const std::vector<attempt_record>& history() const noexcept { return history_; }
    /// Whether there is a reply: replied, or service_error (the error reply).
    [[nodiscard]] bool has_reply() const noexcept { return reply_.has_value(); }
    /// The reply. Precondition: has_reply().
    [[nodiscard]] const Message& reply() const& noexcept {
        WARREN_ASSERT(has_reply(), "call_result::reply() of a call without a reply");
        return *reply_;
    }
    /// The reply, to move from. Precondition: has_reply().
    [[nodiscard]] Message& reply() & noexcept {
        WARREN_ASSERT(has_reply(), "call_result::reply() of a call without a reply");
        return *reply_;
    }
    /// What ended the call: its text names the service, the message_id and the attempts.
    /// Precondition: !ok().
    [[nodiscard]] const warren::error& error() const noexcept {
        WARREN_ASSERT(!ok(), "call_result::error() of an answered call");
        return *failure_;
    }
    /// The reply, moved out; throws the error if the call failed.
    Message take() {
        if (!ok()) detail::raise(*failure_);
        return std::move(*reply_);
    }

private:
    std::string service_;
    std::string message_id_;
    call_status status_;
    std::vector<attempt_record> history_;
    std::optional<Message> reply_;
    std::optional<warren::error> failure_;
};

/// One request of a scatter-gather (or a call): the service, the request and its options.
/// `request`'s properties are kept (message_id, headers, ...), its routing key replaced by
/// the service, its reply_to and correlation_id set per attempt.
/// @code
/// std::vector<warren::orchestrator<warren::broker>::request> asks{
///     {"inventory", "book:2"}, {"shipping", "book:2", {.timeout = 50ms}}};
/// @endcode
/// Thread safety: a value type.
template <class Message = message>
struct basic_request {
    /// A request of `body` with no properties.
    basic_request(std::string to, typename Message::body_type body, call_options how = {})
        : service(std::move(to)), message(Message{.routing_key = {}, .body = std::move(body)}),
          options(std::move(how)) {}
    /// A request of a whole message.
    basic_request(std::string to, Message request, call_options how = {})
        : service(std::move(to)), message(std::move(request)), options(std::move(how)) {}

    std::string service;
    Message message;
    call_options options;
};

/// One step of a sequence: its service, how its request is made from the previous step's
/// reply (the sequence's input for the first step), and its call's options. The maker
/// returns a body or a whole message.
/// @code
/// warren::orchestrator<warren::broker>::step reserve{"inventory", [](const warren::message& paid) {
///     return "reserve:" + paid.body;
/// }, {.timeout = 100ms, .retry = warren::retry_policy::fixed(3, 50ms)}};
/// @endcode
/// Thread safety: a value type; the maker runs where the previous step's reply arrives.
template <class Message = message>
struct basic_step {
    using request_maker = std::function<Message(const Message& previous)>;

    template <class Fn>
        requires std::invocable<Fn&, const Message&> &&
                 (std::convertible_to<std::invoke_result_t<Fn&, const Message&>, typename Message::body_type> ||
                  std::convertible_to<std::invoke_result_t<Fn&, const Message&>, Message>)
    basic_step(std::string to, Fn make, call_options how = {})
        : service(std::move(to)), request(wrap(std::move(make))), options(std::move(how)) {}

    std::string service;
    request_maker request;
    call_options options;

private:
    template <class Fn>
    static request_maker wrap(Fn fn) {
        if constexpr (std::convertible_to<std::invoke_result_t<Fn&, const Message&>, Message>) {
            return request_maker(std::move(fn));
        } else {
            return [fn = std::move(fn)](const Message& previous) mutable {
                return Message{.routing_key = {}, .body = fn(previous)};
            };
        }
    }
};

/// The outcome of a sequence: the calls made, in order, and the step that failed if one
/// did (the sequence stops there).
/// @code
/// auto s = orchestrator.call_sequence_and_wait(order, steps);
/// if (!s.ok()) std::cout << "step " << *s.failed_step() << ": " << s.error().what();
/// @endcode
/// Thread safety: a value type.
template <class Message = message>
class sequence_result {
public:
    /// Made by the orchestrator: `failed` is the failed step's index, `failure` its error.
    sequence_result(std::vector<call_result<Message>> calls, std::size_t steps, std::optional<std::size_t> failed,
                    std::optional<warren::error> failure)
        : calls_(std::move(calls)), steps_(steps), failed_(failed), failure_(std::move(failure)) {}

    /// Whether every step's call was answered without an error.
    [[nodiscard]] bool ok() const noexcept { return !failed_.has_value(); }
    /// The steps of the sequence.
    [[nodiscard]] std::size_t steps() const noexcept { return steps_; }
    /// The calls made, one per step run (the failed one last; none for a step whose
    /// request maker threw).
    [[nodiscard]] const std::vector<call_result<Message>>& calls() const noexcept { return calls_; }
    /// The index of the step that failed (0-based), if one did.
    [[nodiscard]] std::optional<std::size_t> failed_step() const noexcept { return failed_; }
    /// The last step's reply: the sequence's answer. Precondition: ok() and steps() > 0.
    [[nodiscard]] const Message& reply() const noexcept {
        WARREN_ASSERT(ok() && !calls_.empty(), "sequence_result::reply() of a failed or empty sequence");
        return calls_.back().reply();
    }
    /// Which step failed and why ("step 2 of 3 (service 'inventory') failed: ...").
    /// Precondition: !ok().
    [[nodiscard]] const warren::error& error() const noexcept {
        WARREN_ASSERT(!ok(), "sequence_result::error() of a sequence that succeeded");
        return *failure_;
    }

private:
    std::vector<call_result<Message>> calls_;
    std::size_t steps_;
    std::optional<std::size_t> failed_;
    std::optional<warren::error> failure_;
};

/// How a scatter-gather waits.
struct gather_options {
    /// How long the gather waits, on the broker's clock, from when it starts: calls not
    /// ended by then end timed_out (their retries with them), and replies that come later
    /// are dropped and counted late.
    clock::duration deadline = std::chrono::seconds(5);
    /// Answers (calls replied without error) that end the gather early; the calls still
    /// running are then cancelled. 0: wait for every call. It also ends once the quorum
    /// can no longer be reached.
    std::size_t quorum = 0;
};

/// The outcome of a scatter-gather: one call_result per request, in request order, and
/// counts by status.
/// @code
/// auto g = orchestrator.scatter_gather_and_wait(asks, {.deadline = 200ms});
/// for (const auto& r : g.results()) std::cout << r.service() << (r.ok() ? " replied\n" : " did not\n");
/// @endcode
/// Thread safety: a value type.
template <class Message = message>
class gather_result {
public:
    /// Made by the orchestrator.
    gather_result(std::vector<call_result<Message>> results, std::size_t quorum)
        : results_(std::move(results)), quorum_(quorum) {}

    /// One result per request, in request order.
    [[nodiscard]] const std::vector<call_result<Message>>& results() const noexcept { return results_; }
    /// The result of request `i`.
    [[nodiscard]] const call_result<Message>& operator[](std::size_t i) const noexcept { return results_[i]; }
    /// Calls answered without an error.
    [[nodiscard]] std::size_t replied() const noexcept { return count(call_status::replied); }
    /// Calls answered with an error reply, or unroutable.
    [[nodiscard]] std::size_t failed() const noexcept {
        return count(call_status::service_error) + count(call_status::unroutable);
    }
    /// Calls that got no reply in time (before their timeout or the gather's deadline).
    [[nodiscard]] std::size_t timed_out() const noexcept { return count(call_status::timed_out); }
    /// Calls cancelled because the quorum was reached.
    [[nodiscard]] std::size_t cancelled() const noexcept { return count(call_status::cancelled); }
    /// Whether every call replied without error.
    [[nodiscard]] bool complete() const noexcept { return replied() == results_.size(); }
    /// Whether the quorum was reached (every call, for a quorum of 0).
    [[nodiscard]] bool ok() const noexcept {
        return replied() >= (quorum_ == 0 ? results_.size() : std::min(quorum_, results_.size()));
    }

private:
    [[nodiscard]] std::size_t count(call_status s) const noexcept {
        return static_cast<std::size_t>(
            std::count_if(results_.begin(), results_.end(), [s](const auto& r) { return r.status() == s; }));
    }

    std::vector<call_result<Message>> results_;
    std::size_t quorum_;
};

} // namespace warren
