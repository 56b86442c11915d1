#pragma once
/// @file patterns/engine/task_worker.hpp
/// task_worker: the worker side of process_engine. Consumes a task queue, runs a handler
/// per task, publishes the completion or failure event back to the engine, and answers a
/// task it has seen before with the result it gave then.

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
#include <utility>

#include "../../broker.hpp"
#include "../../config.hpp"
#include "../../options.hpp"
#include "data.hpp"

namespace warren {

/// How a process_engine's task and event messages look. A task goes to its queue on the
/// default exchange with the instance's data as body (encode_data), message_id = the task
/// id (one per attempt), correlation_id = the instance id, reply_to = the engine's events
/// queue, type = the step's name, and headers x-workflow, x-workflow-version, x-attempt,
/// x-compensation. Its event goes to the default exchange with routing key = the task's
/// reply_to, the same message_id and correlation_id, type = task.completed (body: the
/// output, encode_data) or task.failed (body: the error). Any worker that follows this
/// (in another language, behind a RabbitMQ bridge) works with the engine.
struct task_protocol {
    static constexpr std::string_view completed = "task.completed";
    static constexpr std::string_view failed = "task.failed";
    static constexpr std::string_view workflow_header = "x-workflow";
    static constexpr std::string_view version_header = "x-workflow-version";
    static constexpr std::string_view attempt_header = "x-attempt";
    static constexpr std::string_view compensation_header = "x-compensation";
};

/// One task as a worker sees it.
struct workflow_task {
    std::string instance_id{};
    /// One per attempt: what deduplicates.
    std::string task_id{};
    std::string step{};
    std::string workflow{};
    std::uint32_t attempt = 0;
    /// Whether this is the compensation of a completed step.
    bool compensation = false;
    /// The instance's data when the task was published.
    workflow_data input{};
};

/// How a task_worker consumes its queue.
struct task_worker_options {
    /// Tasks held unacknowledged at once (0: no limit).
    std::uint16_t prefetch = 0;
    /// Task ids whose results it remembers to answer redeliveries (oldest forgotten first;
    /// 0: no limit).
    std::size_t remembered = 10'000;
    /// Its callback runs inside the engine's publish (consumer_options::synchronous).
    bool synchronous = false;
    /// The consumer's tag; empty: generated.
    std::string tag{};
};

/// A worker for one task queue of a process_engine: for each task, runs
/// `fn(const workflow_task&)`, which returns the output (a workflow_data, merged into the
/// instance's data) or nothing (void), or throws to fail the attempt (the engine retries
/// by the step's retry_policy); then publishes the event back to the task's reply_to and
/// acks the task.
///
/// Idempotent by task id (message_id): a task id it has handled (a redelivery, or an
/// engine resumed from its store that re-publishes the task in flight) is not handled
/// again; the result it gave then is published again, so an engine that lost the first
/// event still gets one. A task id being handled on another thread is acked with no
/// second event (the first will come). A message without a message_id or reply_to is not
/// a task: it is rejected without requeue and counted (malformed()).
/// @code
/// warren::task_worker payments(broker, "payment", [&](const warren::workflow_task& t) {
///     return warren::workflow_data{{"charged", t.input.at("amount")}};
/// });
/// @endcode
/// Thread safety: the counters are thread-safe; the handler runs where dispatch() runs
/// (on several threads at once under concurrent_broker with several dispatchers). The
/// broker must outlive the worker; destroying it ends its subscription.
template <class Broker>
class task_worker {
public:
    using delivery = typename Broker::delivery;
    using message_type = typename Broker::message_type;
    /// The handler as stored.
    using handler = std::function<workflow_data(const workflow_task&)>;

    /// Subscribes to `queue` (which must exist: not_found otherwise).
    template <class Fn>
        requires std::invocable<Fn&, const workflow_task&> &&
                 (std::convertible_to<std::invoke_result_t<Fn&, const workflow_task&>, workflow_data> ||
                  std::is_void_v<std::invoke_result_t<Fn&, const workflow_task&>>)
    task_worker(Broker& owner, std::string_view queue, Fn fn, task_worker_options options = {})
        : broker_(owner), handler_(wrap(std::move(fn))), remembered_(options.remembered) {
        static_assert(std::is_same_v<typename Broker::body_type, std::string>,
                      "task_worker needs a broker of std::string bodies");
        subscription_ = broker_.subscribe(
            queue, [this](delivery& d) { serve(d); },
            {.tag = std::move(options.tag), .ack = ack_mode::manual, .prefetch = options.prefetch,
             .synchronous = options.synchronous});
    }
    task_worker(const task_worker&) = delete;
    task_worker& operator=(const task_worker&) = delete;
    ~task_worker() { subscription_.release(); }

    /// Tasks whose handler ran and returned. Thread-safe.
    [[nodiscard]] std::size_t completed() const {
        const std::scoped_lock lock(mutex_);
        return completed_;
    }
    /// Tasks whose handler threw. Thread-safe.
    [[nodiscard]] std::size_t failed() const {
        const std::scoped_lock lock(mutex_);
        return failed_;
    }
    /// Tasks seen before, answered without running the handler. Thread-safe.
    [[nodiscard]] std::size_t duplicates() const {
        const std::scoped_lock lock(mutex_);
        return duplicates_;
    }
    /// Messages that were not tasks. Thread-safe.
    [[nodiscard]] std::size_t malformed() const {
        const std::scoped_lock lock(mutex_);
        return malformed_;
    }

private:
    struct result {
        bool done = false; // false: being handled
        bool ok = false;
        std::string body{};
    };

    template <class Fn>
    static handler wrap(Fn fn) {
        if constexpr (std::is_void_v<std::invoke_result_t<Fn&, const workflow_task&>>) {
            return [fn = std::move(fn)](const workflow_task& t) mutable {
                fn(t);
                return workflow_data{};
            };
        } else {
            return handler(std::move(fn));
        }
    }

    static workflow_task read(const delivery& d) {
        const auto& p = d.properties();
        workflow_task t;
        t.instance_id = p.correlation_id.value_or("");
        t.task_id = p.message_id.value_or("");
        t.step = p.type.value_or("");
        if (const std::string* w = p.headers.find_string(task_protocol::workflow_header)) t.workflow = *w;
        if (const auto* a = p.headers.find(task_protocol::attempt_header)) {
            if (const auto* n = a->template get_if<std::int64_t>()) t.attempt = static_cast<std::uint32_t>(*n);
        }
        if (const auto* c = p.headers.find(task_protocol::compensation_header)) {
            if (const auto* b = c->template get_if<bool>()) t.compensation = *b;
        }
        t.input = decode_data(d.body());
        return t;
    }

    void serve(delivery& d) {
        const auto& p = d.properties();
        if (!p.message_id || p.message_id->empty() || !p.reply_to) {
            {
                const std::scoped_lock lock(mutex_);
                ++malformed_;
            }
            d.reject(false);
            return;
        }
        const std::string id = *p.message_id;
        std::optional<result> earlier;
        {
            const std::scoped_lock lock(mutex_);
            auto found = results_.find(id);
            if (found != results_.end()) {
                earlier = found->second;
                ++duplicates_;
            } else {
                results_.emplace(id, result{});
            }
        }
        if (earlier) {
            if (earlier->done) reply(d, earlier->ok, earlier->body);
            d.ack();
            return;
        }
        result r;
#if WARREN_EXCEPTIONS
        try {
            r.body = encode_data(handler_(read(d)));
            r.ok = true;
        } catch (const std::exception& e) {
            r.body = e.what();
        } catch (...) {
            r.body = "unknown exception";
        }
#else
        r.body = encode_data(handler_(read(d)));
        r.ok = true;
#endif
        r.done = true;
        remember(id, r);
        reply(d, r.ok, r.body);
        d.ack(); // after the event: a worker that dies before it leaves the task to another
    }

    void remember(const std::string& id, const result& r) {
        const std::scoped_lock lock(mutex_);
        ++(r.ok ? completed_ : failed_);
        results_.insert_or_assign(id, r);
        order_.push_back(id);
        while (remembered_ != 0 && order_.size() > remembered_) {
            results_.erase(order_.front());
            order_.pop_front();
        }
    }

    void reply(const delivery& d, bool ok, const std::string& body) {
        const auto& p = d.properties();
        message_type event{.routing_key = *p.reply_to, .body = body};
        event.properties.message_id = p.message_id;
        event.properties.correlation_id = p.correlation_id;
        event.properties.type = std::string(ok ? task_protocol::completed : task_protocol::failed);
        (void)broker_.publish("", std::move(event)); // an engine that is gone: nobody waits for it
    }

    Broker& broker_;
    handler handler_;
    std::size_t remembered_{};
    mutable std::mutex mutex_;
    std::map<std::string, result, std::less<>> results_;
    std::deque<std::string> order_;
    std::size_t completed_ = 0;
    std::size_t failed_ = 0;
    std::size_t duplicates_ = 0;
    std::size_t malformed_ = 0;
    typename Broker::subscription subscription_; // last: ends before the members above
};

} // namespace warren
