#pragma once
/// @file patterns/saga_participant.hpp
/// saga_participant: a service's side of an orchestrated saga (patterns/saga.hpp): its
/// request queue served by an rpc_server, deduplicated by message_id, answering with the
/// saga wire convention.

#include <atomic>
#include <cstddef>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>

#include "deduplicator.hpp"
#include "rpc_server.hpp"
#include "saga.hpp"

namespace warren {

/// How a saga_participant serves its queue.
struct saga_participant_options {
    /// Requests held unacknowledged at once (0: no limit).
    std::uint16_t prefetch = 1;
    /// Which message ids it remembers, and for how long (on the broker's clock). Replies
    /// are kept for as many ids as `capacity` says, to answer a duplicate again.
    deduplicator_options deduplication{};
    /// The consumer's tag; empty: generated.
    std::string tag{};
};

/// A saga participant: serves a queue of saga requests (an rpc_server underneath) with two
/// handlers, one for actions and one for compensations (by the x-saga-phase header), and
/// deduplicates by message_id, so that a request sent again (a retry after a timeout, a
/// redelivery) runs its local transaction once and gets the first answer again.
///
/// A handler takes `const delivery&` (the saga id is its correlation_id, the step its
/// x-saga-step header, the body what the coordinator sent) and returns a saga_outcome or a
/// body (a success). A failure outcome is a business answer: remembered, and a duplicate
/// gets it again; a transient_failure ("locked, try later") is not remembered. An exception from a handler is taken as transient: the reply is a
/// transient failure (x-saga-transient) with its what(), and the id is not remembered, so
/// the coordinator's retry runs the handler again. A request whose id is being handled on
/// another thread gets a transient failure reply too.
/// @code
/// broker.declare_queue("payment");
/// warren::saga_participant<warren::broker> payment(broker, "payment",
///     [&](const warren::delivery& d) -> warren::saga_outcome<> {
///         if (!wallet.charge(d.body())) return warren::saga_outcome<>::failure("card declined");
///         return "charged " + d.body();
///     },
///     [&](const warren::delivery& d) { wallet.refund(d.body()); return std::string("refunded"); });
/// @endcode
/// Thread safety: the counters are thread-safe; the handlers run where the queue is
/// consumed (dispatch()). The broker must outlive it; the queue must exist.
template <class Broker>
class saga_participant {
public:
    using broker_type = Broker;
    using message_type = typename Broker::message_type;
    using body_type = typename Broker::body_type;
    using delivery = typename Broker::delivery;
    using outcome = saga_outcome<body_type>;
    /// A handler as stored.
    using handler = std::function<outcome(const delivery&)>;

    /// Serves `queue` with `action` and `compensation`, each `fn(const delivery&)`
    /// returning a saga_outcome or a body. Unknown queue: not_found.
    template <class Action, class Compensation>
        requires std::invocable<Action&, const delivery&> && std::invocable<Compensation&, const delivery&>
    saga_participant(Broker& owner, std::string_view queue, Action action, Compensation compensation,
                     saga_participant_options options = {})
        : action_(wrap(std::move(action))), compensation_(wrap(std::move(compensation))),
          seen_(options.deduplication, owner.time_source()), capacity_(options.deduplication.capacity),
          server_(owner, queue, [this](const delivery& d) { return answer(d); },
                  rpc_server_options{.prefetch = options.prefetch, .requeue_on_error = false, .tag = std::move(options.tag)}) {}
    saga_participant(const saga_participant&) = delete;
    saga_participant& operator=(const saga_participant&) = delete;

    /// Requests whose handler ran (first deliveries of their id). Thread-safe.
    [[nodiscard]] std::size_t handled() const noexcept { return handled_.load(); }
    /// Requests answered from memory because their id was handled before. Thread-safe.
    [[nodiscard]] std::size_t duplicates() const noexcept { return duplicates_.load(); }
    /// Requests answered with an error (failure outcomes, exceptions, ids in progress).
    /// Thread-safe.
    [[nodiscard]] std::size_t failures() const noexcept { return failures_.load(); }
    /// Replies published. Thread-safe.
    [[nodiscard]] std::size_t replies() const noexcept { return server_.replies(); }

private:
    template <class Fn>
    static handler wrap(Fn fn) {
        return [fn = std::move(fn)](const delivery& d) mutable -> outcome { return outcome(fn(d)); };
    }

    static message_type reply_of(const outcome& out, const std::string& request_id) {
        message_type reply;
        if (out.ok()) {
            reply.body = out.result();
        } else {
            // A body that cannot hold text carries the reason in the x-error header only.
            if constexpr (std::constructible_from<body_type, const std::string&>) reply.body = body_type(out.error());
            reply.properties.headers.set(saga_wire::error_header, out.error());
            if (out.transient()) reply.properties.headers.set(saga_wire::transient_header, true);
        }
        if (!request_id.empty()) reply.properties.headers.set(saga_wire::request_header, request_id);
        return reply;
    }

    message_type answer(const delivery& request) {
        const std::string id = request.properties().message_id.value_or(std::string());
        switch (seen_.try_begin(id)) {
        case claim::duplicate: {
            ++duplicates_;
            std::lock_guard guard(replies_lock_);
            const auto it = replies_.find(id);
            if (it != replies_.end()) return it->second;
            ++failures_;
            return reply_of(outcome::failure("duplicate request " + detail::quoted(id) + " whose reply is forgotten"),
                            id);
        }
        case claim::in_progress:
            ++failures_;
            return reply_of(outcome::transient_failure("request " + detail::quoted(id) + " is being handled"), id);
        case claim::first:
            break;
        }
        handler& fn = saga_wire::phase_of(request.properties()) == saga_phase::compensation ? compensation_ : action_;
        outcome out;
#if WARREN_EXCEPTIONS
        try {
            out = fn(request);
        } catch (const std::exception& ex) {
            seen_.abandon(id);
            ++failures_;
            return reply_of(outcome::transient_failure(ex.what()), id);
        } catch (...) {
            seen_.abandon(id);
            ++failures_;
            return reply_of(outcome::transient_failure("unknown exception"), id);
        }
#else
        out = fn(request);
#endif
        ++handled_;
        if (!out.ok()) ++failures_;
        message_type reply = reply_of(out, id);
        if (out.transient()) { // "not now": the retry must run the handler again
            seen_.abandon(id);
            return reply;
        }
        if (!id.empty()) {
            // Kept before the id is completed: a duplicate on another thread then finds it.
            std::lock_guard guard(replies_lock_);
            if (replies_.insert_or_assign(id, reply).second) order_.push_back(id);
            while (capacity_ != 0 && order_.size() > capacity_) {
                replies_.erase(order_.front());
                order_.pop_front();
            }
        }
        seen_.complete(id);
        return reply;
    }

    handler action_;
    handler compensation_;
    basic_deduplicator<typename Broker::policy_type> seen_;
    std::size_t capacity_;
    typename Broker::policy_type::mutex replies_lock_; // guards the replies and their order
    std::unordered_map<std::string, message_type> replies_;
    std::deque<std::string> order_;
    std::atomic<std::size_t> handled_{0};
    std::atomic<std::size_t> duplicates_{0};
    std::atomic<std::size_t> failures_{0};
    rpc_server<Broker> server_; // last: its subscription ends before the members above
};

} // namespace warren
