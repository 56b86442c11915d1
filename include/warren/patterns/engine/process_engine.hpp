#pragma once
/// @file patterns/engine/process_engine.hpp
/// process_engine: runs workflow_definitions by publishing tasks to queues and reacting to
/// the events workers publish back (asynchronous like choreography), keeping each
/// instance's state and history where it can be queried (visible like orchestration).
/// Netflix Conductor is the model.

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "../../broker.hpp"
#include "../../clock.hpp"
#include "../../error.hpp"
#include "../../options.hpp"
#include "data.hpp"
#include "definition.hpp"
#include "instance.hpp"
#include "store.hpp"
#include "task_worker.hpp"

namespace warren {

/// What an alert_only timeout reports.
struct engine_alert {
    std::string instance_id{};
    std::string workflow{};
    /// The step whose attempt ran out of time; empty: the whole instance did.
    std::string step{};
    std::string detail{};
    clock::time_point at{};
};

/// How a process_engine is set up.
struct process_engine_options {
    /// The queue workers publish their events to (declared by the engine; each task's
    /// reply_to). Two engines on one broker need two names.
    std::string events_queue = "warren.engine.events";
    /// Instance ids are this followed by a number; letters, digits, `.`, `_`, `-` keep them
    /// usable as file names (file_store).
    std::string id_prefix = "wf-";
    /// Called for each alert (an alert_only timeout, a failure workflow that is not
    /// registered), after the engine's lock is released, on the thread whose call raised
    /// it (poll(), or a dispatch that delivered an event); under concurrent_broker perhaps
    /// on several threads at once.
    std::function<void(const engine_alert&)> on_alert{};
};

/// A process engine over a broker: workflow definitions are registered by name and
/// version; start() makes an instance, whose tasks go to their queues as messages (see
/// task_protocol) and whose progress follows the completion and failure events that
/// workers (task_worker) publish back to the engine's events queue.
///
/// How time is driven: events are handled where the broker delivers them (dispatch(), or
/// the threads that dispatch a concurrent_broker). Timers are not: poll() applies the time
/// of the broker's clock (time_source()), publishing the retries that are due and applying
/// the timeouts that passed, so on a manual_clock a retry goes out exactly at the first
/// poll() at or after its due time. A loop calls dispatch() and poll() in turn; next_due()
/// says when poll() next has work.
///
/// Decisions and forks: the engine walks an instance's definition from the start each time
/// it changes, taking the step states it recorded (a decision's choice included), and
/// publishes the first task of each branch that has not run; a fork completes (joins) when
/// all its branches have. A required task that fails after its attempts fails the
/// instance; with compensate_on_failure (and on a task timeout under fail_and_compensate,
/// or a workflow timeout) the compensation tasks of its completed steps run one by one, in
/// reverse order of completion, before it ends failed or timed_out; then its failure
/// workflow starts. An event whose task id is not the attempt in flight (a redelivery, a
/// late answer to an attempt that timed out) changes nothing (stale_events()).
///
/// History times are the broker clock's when the engine handled each event (not when the
/// worker finished); a step's timings (started_at, ended_at) and the instance's follow
/// from them.
///
/// Every change is saved to the store before the messages it calls for are published; an
/// engine made over a store that holds running instances loads them, and resume() picks
/// them up where they were, publishing the tasks in flight again with the same message_id,
/// so that workers answer them from their memory instead of doing them twice. (resume() is
/// a call of its own because definitions, whose decisions may be functions, are not
/// stored: register them first.) Each save writes the whole instance, history included.
/// @code
/// warren::broker broker;
/// warren::memory_store store;
/// warren::process_engine engine(broker, store);
/// broker.declare_queue("payment");
/// engine.register_workflow({.name = "pay", .steps = {warren::task_step{.name = "charge", .queue = "payment"}}});
/// warren::task_worker worker(broker, "payment", [](const warren::workflow_task&) {
///     return warren::workflow_data{{"paid", "yes"}};
/// });
/// const std::string id = engine.start("pay", {{"amount", "12"}});
/// broker.dispatch();                 // the worker, then the engine
/// engine.status(id);                 // workflow_status::completed
/// @endcode
/// Thread safety: every member is thread-safe under a multi_threaded broker (one lock;
/// messages are published and alerts reported after it is released); with a
/// single_threaded broker, owner thread only. Decision functions and the store run with
/// the lock held and must not call the engine. The broker and the store must outlive the
/// engine.
template <class Broker>
class process_engine {
public:
    using broker_type = Broker;
    using delivery = typename Broker::delivery;
    using message_type = typename Broker::message_type;

    /// Declares the events queue, subscribes to it, and loads what `store` holds (running
    /// instances wait for resume()).
    process_engine(Broker& owner, workflow_store& store, process_engine_options options = {});
    process_engine(const process_engine&) = delete;
    process_engine& operator=(const process_engine&) = delete;
    ~process_engine() { subscription_.release(); }

    // -- definitions ---------------------------------------------------------------------

    /// Registers a workflow definition. precondition_failed for a name and version already
    /// registered, an empty name, a step name empty or used twice, a task without a queue,
    /// a decision with neither key nor choose or with an unnamed or repeated case, a fork
    /// without branches. Thread-safe.
    void register_workflow(workflow_definition definition);
    /// The latest version registered of `workflow`, if any. Thread-safe.
    [[nodiscard]] std::optional<std::uint32_t> latest_version(std::string_view workflow) const {
        const std::scoped_lock lock(mutex_);
        const auto found = definitions_.find(workflow);
        if (found == definitions_.end()) return std::nullopt;
        return found->second.rbegin()->first;
    }

    // -- instances -----------------------------------------------------------------------

    /// Starts an instance of `workflow` (its latest version, or `version`) with `input`,
    /// publishes its first tasks and returns its id. Unknown workflow or version:
    /// not_found. Thread-safe.
    std::string start(std::string_view workflow, workflow_data input = {},
                      std::optional<std::uint32_t> version = std::nullopt);
    /// Picks up the running and compensating instances loaded from the store whose
    /// definitions are registered: publishes again each task in flight (same message_id,
    /// its timeout counted anew from now), leaves retries due when they were, and goes on
    /// where each stopped. Returns how many it resumed; those whose definition is missing
    /// wait for a later call. Thread-safe.
    std::size_t resume();
    /// Applies the broker clock's time: publishes the retries that are due, applies the
    /// task and workflow timeouts that passed. Returns how many timers fired. Thread-safe.
    std::size_t poll();
    /// When poll() next has work, if ever. Thread-safe.
    [[nodiscard]] std::optional<clock::time_point> next_due() const;
    /// Ends a running or compensating instance as terminated (no compensation, no failure
    /// workflow); events for it are ignored from then on. Returns false if it had ended.
    /// Unknown id: not_found. Thread-safe.
    bool terminate(std::string_view id, std::string_view reason = "terminated");

    // -- visibility ------------------------------------------------------------------------

    /// A copy of instance `id`'s state and history, if it exists. Thread-safe.
    [[nodiscard]] std::optional<workflow_instance> find(std::string_view id) const {
        const std::scoped_lock lock(mutex_);
        const auto found = instances_.find(id);
        if (found == instances_.end()) return std::nullopt;
        return found->second.state;
    }
    /// Instance `id`'s status. Unknown id: not_found. Thread-safe.
    [[nodiscard]] workflow_status status(std::string_view id) const {
        const std::scoped_lock lock(mutex_);
        return record_of(id).state.status;
    }
    /// The tasks where instance `id` is: in flight, waiting for a retry, or being
    /// compensated, in the order they were reached. Unknown id: not_found. Thread-safe.
    [[nodiscard]] std::vector<std::string> current_steps(std::string_view id) const;
    /// Instance `id`'s history, oldest first. Unknown id: not_found. Thread-safe.
    [[nodiscard]] std::vector<history_entry> history(std::string_view id) const {
        const std::scoped_lock lock(mutex_);
        return record_of(id).state.history;
    }
    /// The ids of the instances in status `s`, in id order. Thread-safe.
    [[nodiscard]] std::vector<std::string> instances(workflow_status s) const {
        const std::scoped_lock lock(mutex_);
        std::vector<std::string> ids{};
        for (const auto& [id, r] : instances_) {
            if (r.state.status == s) ids.push_back(id);
        }
        return ids;
    }
    /// Events that matched no attempt in flight: redeliveries, late answers, unknown
    /// instances. Thread-safe.
    [[nodiscard]] std::size_t stale_events() const {
        const std::scoped_lock lock(mutex_);
        return stale_events_;
    }
    /// Task messages that no queue took. Thread-safe.
    [[nodiscard]] std::size_t unroutable_tasks() const {
        const std::scoped_lock lock(mutex_);
        return unroutable_;
    }
    /// The queue workers publish events to. Thread-safe.
    [[nodiscard]] const std::string& events_queue() const noexcept { return options_.events_queue; }

private:
    struct definition_entry {
        workflow_definition definition;
        std::map<std::string, const task_step*, std::less<>> tasks; // into definition.steps
    };
    struct record {
        workflow_instance state;
        const definition_entry* definition = nullptr; // null until registered
        bool dormant = false;                         // loaded, waiting for resume()
    };
    struct pending_message {
        message_type message;
        std::string instance{};
        std::string step{};
    };
    /// What one call does once the lock is released.
    struct outbox {
        std::vector<pending_message> messages{};
        std::vector<engine_alert> alerts{};
        std::set<std::string> dirty; // instances to save (before the lock is released)
    };
    using mutex_type = typename Broker::policy_type::mutex;

    [[nodiscard]] const record& record_of(std::string_view id) const {
        const auto found = instances_.find(id);
        if (found == instances_.end()) detail::raise(reply_code::not_found, "no workflow instance " + detail::quoted(id));
        return found->second;
    }
    [[nodiscard]] record& record_of(std::string_view id) {
        return const_cast<record&>(std::as_const(*this).record_of(id));
    }
    static step_state* state_of(workflow_instance& w, std::string_view name) {
        for (auto& s : w.steps) {
            if (s.name == name) return &s;
        }
        return nullptr;
    }
    static void note(workflow_instance& w, std::string_view step, std::uint32_t attempt, history_event event,
                     clock::time_point at, std::string detail = {}) {
        w.history.push_back({std::string(step), attempt, event, at, std::move(detail)});
    }
    static std::string duration_text(clock::duration d) {
        const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(d);
        if (ms == d) return std::to_string(ms.count()) + "ms";
        return std::to_string(d.count()) + "ns";
    }
    [[nodiscard]] clock::time_point now() const noexcept { return broker_.time_source().now(); }

    static void validate(const workflow_definition& d);
    static void index_tasks(const step_list& steps, definition_entry& entry);
    void attach_definitions(const definition_entry& entry);

    std::string start_locked(const definition_entry& entry, workflow_data input, clock::time_point at, outbox& out);
    void schedule_task(record& r, const task_step& t, std::uint32_t attempt, clock::time_point at, outbox& out);
    void schedule_compensation(record& r, const task_step& t, std::uint32_t attempt, clock::time_point at,
                               outbox& out);
    message_type task_message(const workflow_instance& w, const std::string& queue, const step_state& s,
                              bool compensation) const;
    bool advance_sequence(record& r, const step_list& steps, clock::time_point at, outbox& out);
    void advance(record& r, clock::time_point at, outbox& out);
    void attempt_failed(record& r, const task_step& t, std::string error, bool timed_out, clock::time_point at,
                        outbox& out);
    void compensation_failed(record& r, const task_step& t, std::string error, clock::time_point at, outbox& out);
    void fail_workflow(record& r, workflow_status ending, std::string_view step, std::string error, bool compensate,
                       clock::time_point at, outbox& out);
    void next_compensation(record& r, clock::time_point at, outbox& out);
    void finish(record& r, workflow_status ending, clock::time_point at, outbox& out);
    void on_event(delivery& d);
    std::size_t poll_instance(record& r, clock::time_point at, outbox& out);
    void alert(record& r, std::string_view step, std::string detail, clock::time_point at, outbox& out) {
        note(r.state, step, 0, history_event::alert, at, detail);
        out.alerts.push_back({r.state.id, r.state.workflow, std::string(step), std::move(detail), at});
    }
    void save_dirty(outbox& out) {
        for (const auto& id : out.dirty) {
            if (auto found = instances_.find(id); found != instances_.end()) store_.save(found->second.state);
        }
        out.dirty.clear();
    }
    void flush(outbox& out);

    Broker& broker_;
    workflow_store& store_;
    process_engine_options options_;
    mutable mutex_type mutex_;
    std::map<std::string, std::map<std::uint32_t, definition_entry>, std::less<>> definitions_;
    std::map<std::string, record, std::less<>> instances_;
    std::set<std::string, std::less<>> active_; // running or compensating
    std::uint64_t sequence_ = 0;
    std::size_t stale_events_ = 0;
    std::size_t unroutable_ = 0;
    typename Broker::subscription subscription_; // last: ends before the members above
};

// ---------------------------------------------------------------------------------------
// construction and definitions

template <class Broker>
process_engine<Broker>::process_engine(Broker& owner, workflow_store& store, process_engine_options options)
    : broker_(owner), store_(store), options_(std::move(options)) {
    static_assert(std::is_same_v<typename Broker::body_type, std::string>,
                  "process_engine needs a broker of std::string bodies");
    for (auto& w : store_.load_all()) {
        // Ids go on from the highest number the store holds, so none is given twice.
        if (w.id.starts_with(options_.id_prefix)) {
            const std::string_view digits = std::string_view(w.id).substr(options_.id_prefix.size());
            std::uint64_t n = 0;
            bool number = !digits.empty();
            for (const char c : digits) {
                number = number && c >= '0' && c <= '9';
                n = n * 10 + static_cast<std::uint64_t>(c - '0');
            }
            if (number) sequence_ = std::max(sequence_, n);
        }
        std::string id = w.id;
        const bool running = !is_final(w.status);
        if (running) active_.insert(id);
        instances_.insert_or_assign(std::move(id), record{.state = std::move(w), .definition = nullptr, .dormant = running});
    }
    broker_.declare_queue(options_.events_queue);
    subscription_ = broker_.subscribe(
        options_.events_queue, [this](delivery& d) { on_event(d); }, {.ack = ack_mode::manual});
}

template <class Broker>
void process_engine<Broker>::validate(const workflow_definition& d) {
    auto refuse = [&](const std::string& why) {
        detail::raise(reply_code::precondition_failed, "workflow " + detail::quoted(d.name) + ": " + why);
    };
    if (d.name.empty()) detail::raise(reply_code::precondition_failed, "a workflow needs a name");
    std::set<std::string, std::less<>> names;
    std::function<void(const step_list&)> check = [&](const step_list& steps) {
        for (const auto& s : steps) {
            if (s.name().empty()) refuse("a step has no name");
            if (!names.insert(s.name()).second) refuse("step name " + detail::quoted(s.name()) + " is used twice");
            if (const auto* t = std::get_if<task_step>(&s.kind)) {
                if (t->queue.empty()) refuse("task " + detail::quoted(t->name) + " has no queue");
                if (t->queue.size() > 255 || t->compensation_queue.size() > 255) {
                    refuse("task " + detail::quoted(t->name) + " names a queue longer than 255 bytes");
                }
            } else if (const auto* c = std::get_if<decision_step>(&s.kind)) {
                if (c->key.empty() && !c->choose) refuse("decision " + detail::quoted(c->name) + " has neither key nor choose");
                std::set<std::string, std::less<>> cases;
                for (const auto& b : c->cases) {
                    if (b.name.empty() || !cases.insert(b.name).second) {
                        refuse("decision " + detail::quoted(c->name) + " has an unnamed or repeated case");
                    }
                    check(b.steps);
                }
                check(c->otherwise);
            } else {
                const auto& f = std::get<fork_step>(s.kind);
                if (f.branches.empty()) refuse("fork " + detail::quoted(f.name) + " has no branches");
                for (const auto& b : f.branches) check(b.steps);
            }
        }
    };
    check(d.steps);
}

template <class Broker>
void process_engine<Broker>::index_tasks(const step_list& steps, definition_entry& entry) {
    for (const auto& s : steps) {
        if (const auto* t = std::get_if<task_step>(&s.kind)) {
            entry.tasks.emplace(t->name, t);
        } else if (const auto* c = std::get_if<decision_step>(&s.kind)) {
            for (const auto& b : c->cases) index_tasks(b.steps, entry);
            index_tasks(c->otherwise, entry);
        } else {
            for (const auto& b : std::get<fork_step>(s.kind).branches) index_tasks(b.steps, entry);
        }
    }
}

template <class Broker>
void process_engine<Broker>::attach_definitions(const definition_entry& entry) {
    for (auto& [id, r] : instances_) {
        if (r.definition == nullptr && r.state.workflow == entry.definition.name &&
            r.state.version == entry.definition.version) {
            r.definition = &entry;
        }
    }
}

template <class Broker>
void process_engine<Broker>::register_workflow(workflow_definition definition) {
    validate(definition);
    const std::scoped_lock lock(mutex_);
    auto& versions = definitions_[definition.name];
    const std::uint32_t version = definition.version;
    if (versions.contains(version)) {
        detail::raise(reply_code::precondition_failed, "workflow " + detail::quoted(definition.name) + " version " +
                                                           std::to_string(version) + " is registered already");
    }
    // Indexed in place: the task pointers point into the stored definition, which a map
    // node never moves.
    definition_entry& entry = versions[version];
    entry.definition = std::move(definition);
    index_tasks(entry.definition.steps, entry);
    attach_definitions(entry);
}

// ---------------------------------------------------------------------------------------
// starting, scheduling, advancing

template <class Broker>
std::string process_engine<Broker>::start(std::string_view workflow, workflow_data input,
                                          std::optional<std::uint32_t> version) {
    outbox out;
    std::string id{};
    {
        const std::scoped_lock lock(mutex_);
        const auto found = definitions_.find(workflow);
        if (found == definitions_.end()) detail::raise(reply_code::not_found, "no workflow " + detail::quoted(workflow));
        const auto v = version ? found->second.find(*version) : std::prev(found->second.end());
        if (v == found->second.end()) {
            detail::raise(reply_code::not_found,
                          "no version " + std::to_string(*version) + " of workflow " + detail::quoted(workflow));
        }
        id = start_locked(v->second, std::move(input), now(), out);
        save_dirty(out);
    }
    flush(out);
    return id;
}

template <class Broker>
std::string process_engine<Broker>::start_locked(const definition_entry& entry, workflow_data input,
                                                 clock::time_point at, outbox& out) {
    std::string id{};
    do {
        id = options_.id_prefix + std::to_string(++sequence_);
    } while (instances_.contains(id));
    workflow_instance w;
    w.id = id;
    w.workflow = entry.definition.name;
    w.version = entry.definition.version;
    w.data = input;
    w.input = std::move(input);
    w.started_at = at;
    if (entry.definition.timeout > clock::duration::zero()) w.deadline = at + entry.definition.timeout;
    note(w, "", 0, history_event::workflow_started, at, "version " + std::to_string(w.version));
    record& r = instances_.insert_or_assign(id, record{.state = std::move(w), .definition = &entry}).first->second;
    active_.insert(id);
    out.dirty.insert(id);
    advance(r, at, out);
    return id;
}

template <class Broker>
auto process_engine<Broker>::task_message(const workflow_instance& w, const std::string& queue, const step_state& s,
                                          bool compensation) const -> message_type {
    message_type m{.routing_key = queue, .body = encode_data(w.data)};
    auto& p = m.properties;
    p.message_id = s.task_id;
    p.correlation_id = w.id;
    p.reply_to = options_.events_queue;
    p.type = s.name;
    p.headers.set(task_protocol::workflow_header, w.workflow);
    p.headers.set(task_protocol::version_header, static_cast<std::int64_t>(w.version));
    p.headers.set(task_protocol::attempt_header, static_cast<std::int64_t>(s.attempt));
    p.headers.set(task_protocol::compensation_header, compensation);
    return m;
}

template <class Broker>
void process_engine<Broker>::schedule_task(record& r, const task_step& t, std::uint32_t attempt, clock::time_point at,
                                           outbox& out) {
    workflow_instance& w = r.state;
    step_state* s = state_of(w, t.name);
    if (s == nullptr) {
        w.steps.push_back({.name = t.name, .started_at = at});
        s = &w.steps.back();
    }
    s->status = step_status::in_progress;
    s->attempt = attempt;
    s->task_id = w.id + "." + t.name + "." + std::to_string(attempt);
    s->deadline = t.timeout > clock::duration::zero() ? std::optional(at + t.timeout) : std::nullopt;
    s->retry_at.reset();
    s->alerted = false;
    note(w, t.name, attempt, history_event::task_scheduled, at, t.queue);
    out.messages.push_back({task_message(w, t.queue, *s, false), w.id, t.name});
    out.dirty.insert(w.id);
}

template <class Broker>
void process_engine<Broker>::schedule_compensation(record& r, const task_step& t, std::uint32_t attempt,
                                                   clock::time_point at, outbox& out) {
    workflow_instance& w = r.state;
    step_state& s = *state_of(w, t.name);
    s.status = step_status::compensating;
    s.attempt = attempt;
    s.task_id = w.id + "." + t.name + ".undo." + std::to_string(attempt);
    s.deadline = t.timeout > clock::duration::zero() ? std::optional(at + t.timeout) : std::nullopt;
    s.retry_at.reset();
    note(w, t.name, attempt, history_event::compensation_scheduled, at, t.compensation_queue);
    out.messages.push_back({task_message(w, t.compensation_queue, s, true), w.id, t.name});
    out.dirty.insert(w.id);
}

template <class Broker>
bool process_engine<Broker>::advance_sequence(record& r, const step_list& steps, clock::time_point at,
                                              outbox& out) {
    workflow_instance& w = r.state;
    for (const auto& s : steps) {
        if (const auto* t = std::get_if<task_step>(&s.kind)) {
            const step_state* state = state_of(w, t->name);
            if (state == nullptr) {
                schedule_task(r, *t, 1, at, out);
                return false;
            }
            if (state->status != step_status::completed && state->status != step_status::completed_with_errors) {
                return false;
            }
        } else if (const auto* c = std::get_if<decision_step>(&s.kind)) {
            if (state_of(w, c->name) == nullptr) {
                std::string value{};
                if (c->choose) {
                    value = c->choose(w.data);
                } else if (const auto found = w.data.find(c->key); found != w.data.end()) {
                    value = found->second;
                }
                const bool matched = std::any_of(c->cases.begin(), c->cases.end(),
                                                 [&](const workflow_branch& b) { return b.name == value; });
                w.steps.push_back({.name = c->name, .status = step_status::completed, .started_at = at,
                                   .ended_at = at, .branch = matched ? value : std::string()});
                note(w, c->name, 0, history_event::decided, at, matched ? value : "otherwise (" + value + ")");
                out.dirty.insert(w.id);
            }
            const std::string chosen = state_of(w, c->name)->branch; // a copy: the walk below adds steps
            const step_list* taken = &c->otherwise;
            for (const auto& b : c->cases) {
                if (!chosen.empty() && b.name == chosen) taken = &b.steps;
            }
            if (!advance_sequence(r, *taken, at, out)) return false;
        } else {
            const auto& f = std::get<fork_step>(s.kind);
            if (const step_state* state = state_of(w, f.name); state == nullptr) {
                w.steps.push_back({.name = f.name, .status = step_status::in_progress, .started_at = at});
                note(w, f.name, 0, history_event::forked, at, std::to_string(f.branches.size()) + " branches");
                out.dirty.insert(w.id);
            } else if (state->status == step_status::completed) {
                continue;
            }
            bool joined = true;
            for (const auto& b : f.branches) joined = advance_sequence(r, b.steps, at, out) && joined; // every branch
            if (!joined) return false;
            step_state& state = *state_of(w, f.name);
            state.status = step_status::completed;
            state.ended_at = at;
            note(w, f.name, 0, history_event::joined, at);
            out.dirty.insert(w.id);
        }
    }
    return true;
}

template <class Broker>
void process_engine<Broker>::advance(record& r, clock::time_point at, outbox& out) {
    if (r.state.status != workflow_status::running || r.definition == nullptr) return;
    if (!advance_sequence(r, r.definition->definition.steps, at, out)) return;
    r.state.status = workflow_status::completed;
    r.state.ended_at = at;
    note(r.state, "", 0, history_event::workflow_completed, at);
    active_.erase(r.state.id);
    out.dirty.insert(r.state.id);
}

// ---------------------------------------------------------------------------------------
// failures, compensation, the end

template <class Broker>
void process_engine<Broker>::attempt_failed(record& r, const task_step& t, std::string error, bool timed_out,
                                            clock::time_point at, outbox& out) {
    workflow_instance& w = r.state;
    step_state& s = *state_of(w, t.name);
    s.error = error;
    s.deadline.reset();
    note(w, t.name, s.attempt, timed_out ? history_event::task_timed_out : history_event::task_failed, at, error);
    out.dirty.insert(w.id);
    if (t.retry.allows_retry(s.attempt)) {
        // Seeded per instance and step, so that instances failing together do not all
        // retry at once, while one instance's delays stay reproducible.
        const auto seed = static_cast<std::uint64_t>(std::hash<std::string>{}(w.id + "." + t.name));
        const clock::duration delay = t.retry.delay_before_retry(s.attempt, seed);
        s.status = step_status::waiting_retry;
        s.retry_at = detail::saturating_add(at, delay);
        note(w, t.name, s.attempt, history_event::retry_scheduled, at, "after " + duration_text(delay));
        return;
    }
    s.ended_at = at;
    if (t.optional) {
        s.status = step_status::completed_with_errors;
        advance(r, at, out);
        return;
    }
    s.status = step_status::failed;
    fail_workflow(r, workflow_status::failed, t.name, "step " + detail::quoted(t.name) + " failed: " + error,
                  r.definition->definition.compensate_on_failure, at, out);
}

template <class Broker>
void process_engine<Broker>::fail_workflow(record& r, workflow_status ending, std::string_view step,
                                           std::string error, bool compensate, clock::time_point at, outbox& out) {
    workflow_instance& w = r.state;
    w.error = std::move(error);
    w.failed_step = std::string(step);
    w.ending = ending;
    w.compensation_plan.clear();
    w.compensation_next = 0;
    if (compensate) {
        std::vector<const step_state*> done;
        for (const auto& s : w.steps) {
            const auto t = r.definition->tasks.find(s.name);
            if (s.status == step_status::completed && t != r.definition->tasks.end() &&
                !t->second->compensation_queue.empty()) {
                done.push_back(&s);
            }
        }
        std::sort(done.begin(), done.end(),
                  [](const step_state* a, const step_state* b) { return a->completion_order > b->completion_order; });
        for (const auto* s : done) w.compensation_plan.push_back(s->name);
    }
    out.dirty.insert(w.id);
    if (w.compensation_plan.empty()) {
        finish(r, ending, at, out);
        return;
    }
    w.status = workflow_status::compensating;
    next_compensation(r, at, out);
}

template <class Broker>
void process_engine<Broker>::next_compensation(record& r, clock::time_point at, outbox& out) {
    workflow_instance& w = r.state;
    if (w.compensation_next < w.compensation_plan.size()) {
        const task_step& t = *r.definition->tasks.at(w.compensation_plan[w.compensation_next]);
        schedule_compensation(r, t, 1, at, out);
        return;
    }
    finish(r, w.ending, at, out);
}

template <class Broker>
void process_engine<Broker>::compensation_failed(record& r, const task_step& t, std::string error,
                                                 clock::time_point at, outbox& out) {
    workflow_instance& w = r.state;
    step_state& s = *state_of(w, t.name);
    s.error = error;
    s.deadline.reset();
    out.dirty.insert(w.id);
    if (t.compensation_retry.allows_retry(s.attempt)) {
        const auto seed = static_cast<std::uint64_t>(std::hash<std::string>{}(w.id + "." + t.name + ".undo"));
        const clock::duration delay = t.compensation_retry.delay_before_retry(s.attempt, seed);
        s.retry_at = detail::saturating_add(at, delay);
        note(w, t.name, s.attempt, history_event::retry_scheduled, at, "compensation after " + duration_text(delay));
        return;
    }
    s.status = step_status::compensation_failed;
    note(w, t.name, s.attempt, history_event::compensation_failed, at, error);
    ++w.compensation_next;
    next_compensation(r, at, out);
}

template <class Broker>
void process_engine<Broker>::finish(record& r, workflow_status ending, clock::time_point at, outbox& out) {
    workflow_instance& w = r.state;
    w.status = ending;
    w.ended_at = at;
    for (auto& s : w.steps) {
        if (s.status == step_status::in_progress || s.status == step_status::waiting_retry) {
            s.status = step_status::cancelled;
            s.deadline.reset();
            s.retry_at.reset();
        }
    }
    const history_event event = ending == workflow_status::failed      ? history_event::workflow_failed
                                : ending == workflow_status::timed_out ? history_event::workflow_timed_out
                                                                       : history_event::workflow_terminated;
    note(w, "", 0, event, at, w.error);
    active_.erase(w.id);
    out.dirty.insert(w.id);
    const std::string& failure = r.definition ? r.definition->definition.failure_workflow : std::string();
    if (ending == workflow_status::terminated || failure.empty()) return;
    const auto found = definitions_.find(failure);
    if (found == definitions_.end()) {
        alert(r, "", "failure workflow " + detail::quoted(failure) + " is not registered", at, out);
        return;
    }
    workflow_data input = w.data;
    input.insert_or_assign("failed_instance", w.id);
    input.insert_or_assign("failed_workflow", w.workflow);
    input.insert_or_assign("reason", w.error);
    const std::string id = w.id; // start_locked inserts into instances_; r stays valid (a map node)
    const std::string started = start_locked(found->second.rbegin()->second, std::move(input), at, out);
    workflow_instance& failed = instances_.find(id)->second.state;
    failed.failure_instance = started;
    note(failed, "", 0, history_event::failure_workflow_started, at, started);
}

template <class Broker>
bool process_engine<Broker>::terminate(std::string_view id, std::string_view reason) {
    outbox out;
    {
        const std::scoped_lock lock(mutex_);
        record& r = record_of(id);
        if (is_final(r.state.status)) return false;
        r.state.error = std::string(reason);
        for (auto& s : r.state.steps) {
            if (s.status == step_status::compensating) {
                s.status = step_status::cancelled;
                s.deadline.reset();
                s.retry_at.reset();
            }
        }
        finish(r, workflow_status::terminated, now(), out);
        save_dirty(out);
    }
    flush(out);
    return true;
}

// ---------------------------------------------------------------------------------------
// events and time

template <class Broker>
void process_engine<Broker>::on_event(delivery& d) {
    const auto& p = d.properties();
    outbox out;
    {
        const std::scoped_lock lock(mutex_);
        const auto found = p.correlation_id ? instances_.find(*p.correlation_id) : instances_.end();
        step_state* s = nullptr;
        if (found != instances_.end() && found->second.definition != nullptr && p.message_id) {
            for (auto& candidate : found->second.state.steps) {
                if (candidate.task_id == *p.message_id) s = &candidate;
            }
        }
        const bool ok = p.type && *p.type == task_protocol::completed;
        const bool known_type = p.type && (ok || *p.type == task_protocol::failed);
        // A result counts only for the attempt in flight; a compensation waiting for its
        // retry has none.
        const bool in_flight = s != nullptr && known_type && !is_final(found->second.state.status) &&
                               (s->status == step_status::in_progress ||
                                (s->status == step_status::compensating && !s->retry_at));
        if (!in_flight) {
            ++stale_events_;
        } else {
            record& r = found->second;
            workflow_instance& w = r.state;
            const clock::time_point at = now();
            const task_step& t = *r.definition->tasks.at(s->name);
            out.dirty.insert(w.id);
            if (s->status == step_status::compensating) {
                if (ok) {
                    s->status = step_status::compensated;
                    s->deadline.reset();
                    note(w, s->name, s->attempt, history_event::compensation_completed, at);
                    ++w.compensation_next;
                    next_compensation(r, at, out);
                } else {
                    compensation_failed(r, t, d.body(), at, out);
                }
            } else if (ok) {
                // Decoded first: a malformed output throws (the broker rejects the event
                // and reports it) with the instance unchanged; the attempt then times out.
                workflow_data output = decode_data(d.body());
                std::uint64_t order = 0;
                for (const auto& other : w.steps) order = std::max(order, other.completion_order);
                s->status = step_status::completed;
                s->output = std::move(output);
                s->ended_at = at;
                s->deadline.reset();
                s->completion_order = order + 1;
                for (const auto& [k, v] : s->output) w.data.insert_or_assign(k, v);
                note(w, s->name, s->attempt, history_event::task_completed, at);
                if (w.status == workflow_status::running) {
                    advance(r, at, out);
                } else if (!t.compensation_queue.empty()) {
                    // A sibling that finished while the instance was being compensated is
                    // undone too, after the others.
                    w.compensation_plan.push_back(s->name);
                }
            } else if (w.status == workflow_status::running) {
                attempt_failed(r, t, d.body(), false, at, out);
            } else {
                s->status = step_status::cancelled;
                s->ended_at = at;
                s->error = d.body();
                note(w, s->name, s->attempt, history_event::task_failed, at, d.body());
            }
        }
        save_dirty(out);
    }
    d.ack(); // after saving: an engine that dies first gets the event again
    flush(out);
}

template <class Broker>
std::size_t process_engine<Broker>::poll_instance(record& r, clock::time_point at, outbox& out) {
    workflow_instance& w = r.state;
    const workflow_definition& def = r.definition->definition;
    std::size_t fired = 0;
    if (w.status == workflow_status::running && w.deadline && *w.deadline <= at && !w.alerted) {
        ++fired;
        if (def.on_timeout == workflow_timeout_policy::alert_only) {
            w.alerted = true;
            alert(r, "", "workflow timed out after " + duration_text(def.timeout), at, out);
            out.dirty.insert(w.id);
        } else {
            fail_workflow(r, workflow_status::timed_out, "", "workflow timed out after " + duration_text(def.timeout),
                          true, at, out);
            return fired;
        }
    }
    // By index: a retry or a failure may add steps (advance) while this walks them.
    for (std::size_t i = 0; i < w.steps.size() && !is_final(w.status); ++i) {
        step_state& s = w.steps[i];
        const auto spec = r.definition->tasks.find(s.name);
        if (spec == r.definition->tasks.end()) continue; // a decision or a fork: no timers
        const task_step& t = *spec->second;
        if (w.status == workflow_status::running) {
            if (s.status == step_status::waiting_retry && s.retry_at && *s.retry_at <= at) {
                ++fired;
                schedule_task(r, t, s.attempt + 1, at, out);
            } else if (s.status == step_status::in_progress && s.deadline && *s.deadline <= at && !s.alerted) {
                ++fired;
                const std::string why = "timed out after " + duration_text(t.timeout);
                if (t.on_timeout == timeout_policy::retry) {
                    attempt_failed(r, t, why, true, at, out);
                } else if (t.on_timeout == timeout_policy::alert_only) {
                    s.alerted = true;
                    out.dirty.insert(w.id);
                    alert(r, t.name, "attempt " + std::to_string(s.attempt) + " " + why, at, out);
                } else {
                    note(w, t.name, s.attempt, history_event::task_timed_out, at, why);
                    s.status = step_status::failed;
                    s.error = why;
                    s.ended_at = at;
                    s.deadline.reset();
                    fail_workflow(r, workflow_status::timed_out, t.name, "step " + detail::quoted(t.name) + " " + why,
                                  true, at, out);
                }
            }
        } else if (s.status == step_status::compensating) {
            if (s.retry_at && *s.retry_at <= at) {
                ++fired;
                schedule_compensation(r, t, s.attempt + 1, at, out);
            } else if (!s.retry_at && s.deadline && *s.deadline <= at) {
                ++fired;
                note(w, t.name, s.attempt, history_event::task_timed_out, at, "compensation timed out");
                compensation_failed(r, t, "compensation timed out after " + duration_text(t.timeout), at, out);
            }
        }
    }
    return fired;
}

template <class Broker>
std::size_t process_engine<Broker>::poll() {
    outbox out;
    std::size_t fired = 0;
    {
        const std::scoped_lock lock(mutex_);
        const clock::time_point at = now();
        // A copy: finishing an instance takes it out of active_, a failure workflow adds one.
        const std::vector<std::string> ids(active_.begin(), active_.end());
        for (const auto& id : ids) {
            record& r = instances_.find(id)->second;
            if (r.definition == nullptr || r.dormant || is_final(r.state.status)) continue;
            fired += poll_instance(r, at, out);
        }
        save_dirty(out);
    }
    flush(out);
    return fired;
}

template <class Broker>
std::optional<clock::time_point> process_engine<Broker>::next_due() const {
    const std::scoped_lock lock(mutex_);
    std::optional<clock::time_point> due{};
    auto consider = [&](const std::optional<clock::time_point>& t) {
        if (t && (!due || *t < *due)) due = t;
    };
    for (const auto& id : active_) {
        const record& r = instances_.find(id)->second;
        if (r.definition == nullptr || r.dormant) continue;
        const workflow_instance& w = r.state;
        if (w.status == workflow_status::running && !w.alerted) consider(w.deadline);
        for (const auto& s : w.steps) {
            if (s.status == step_status::waiting_retry || s.status == step_status::compensating) consider(s.retry_at);
            if ((s.status == step_status::in_progress && !s.alerted) ||
                (s.status == step_status::compensating && !s.retry_at)) {
                consider(s.deadline);
            }
        }
    }
    return due;
}

template <class Broker>
std::size_t process_engine<Broker>::resume() {
    outbox out;
    std::size_t resumed = 0;
    {
        const std::scoped_lock lock(mutex_);
        const clock::time_point at = now();
        for (const auto& id : std::vector<std::string>(active_.begin(), active_.end())) {
            record& r = instances_.find(id)->second;
            if (!r.dormant || r.definition == nullptr) continue;
            r.dormant = false;
            ++resumed;
            workflow_instance& w = r.state;
            note(w, "", 0, history_event::resumed, at);
            out.dirty.insert(w.id);
            for (auto& s : w.steps) {
                const auto spec = r.definition->tasks.find(s.name);
                if (spec == r.definition->tasks.end()) continue;
                const task_step& t = *spec->second;
                // The attempt in flight goes out again as it was (same task id), with its
                // full timeout from now: its first publish may have been lost with the
                // process that made it.
                const bool task = w.status == workflow_status::running && s.status == step_status::in_progress;
                const bool undo = w.status == workflow_status::compensating && s.status == step_status::compensating &&
                                  !s.retry_at;
                if (!task && !undo) continue;
                s.deadline = t.timeout > clock::duration::zero() ? std::optional(at + t.timeout) : std::nullopt;
                note(w, t.name, s.attempt, undo ? history_event::compensation_scheduled : history_event::task_scheduled,
                     at, "again, on resume");
                out.messages.push_back({task_message(w, undo ? t.compensation_queue : t.queue, s, undo), w.id, t.name});
            }
            // What was saved after a step completed but before the next was published.
            advance(r, at, out);
        }
        save_dirty(out);
    }
    flush(out);
    return resumed;
}

template <class Broker>
std::vector<std::string> process_engine<Broker>::current_steps(std::string_view id) const {
    const std::scoped_lock lock(mutex_);
    std::vector<std::string> names{};
    for (const auto& s : record_of(id).state.steps) {
        if (!s.task_id.empty() && (s.status == step_status::in_progress || s.status == step_status::waiting_retry ||
                                   s.status == step_status::compensating)) {
            names.push_back(s.name);
        }
    }
    return names;
}

template <class Broker>
void process_engine<Broker>::flush(outbox& out) {
    for (auto& m : out.messages) {
        if (broker_.publish("", std::move(m.message)) != 0) continue;
        // Nobody consumes that queue (yet): recorded, and left to the step's timeout.
        const std::scoped_lock lock(mutex_);
        ++unroutable_;
        if (auto found = instances_.find(m.instance); found != instances_.end()) {
            note(found->second.state, m.step, 0, history_event::unroutable, now(), "no queue took the task");
            store_.save(found->second.state);
        }
    }
    for (const auto& a : out.alerts) {
        if (options_.on_alert) options_.on_alert(a);
    }
}

} // namespace warren
