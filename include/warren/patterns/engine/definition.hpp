#pragma once
/// @file patterns/engine/definition.hpp
/// workflow_definition: a named, versioned workflow of steps (tasks, decisions, forks
/// with their join) for process_engine, after Netflix Conductor's workflow definitions.

#include <cstdint>
#include <cstddef>
#include <functional>
#include <initializer_list>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "../../clock.hpp"
#include "../retry_policy.hpp"
#include "data.hpp"

namespace warren {

/// What happens when a task attempt, or a whole instance, runs out of time (Conductor's
/// timeoutPolicy).
enum class timeout_policy : std::uint8_t {
    retry,                ///< the attempt counts as failed: retried while the retry_policy allows (tasks only)
    fail_and_compensate,  ///< the instance ends timed_out, after compensating its completed steps
    alert_only,           ///< an alert is recorded and reported (engine option on_alert); it keeps waiting
};

struct workflow_step;

/// Steps in order: a vector of workflow_step that may be named before workflow_step is
/// complete (a branch holds steps, a step holds branches). Its members are defined below
/// workflow_step, so that nothing needs the element type early; a default-initialised
/// member of this type compiles where a std::vector of the incomplete type would not
/// (clang instantiates its destructor there).
class step_list {
public:
    step_list() noexcept;
    step_list(std::initializer_list<workflow_step> steps);
    step_list(const step_list& other);
    step_list(step_list&& other) noexcept;
    step_list& operator=(const step_list& other);
    step_list& operator=(step_list&& other) noexcept;
    ~step_list();

    /// The steps in order. Thread-safe (const).
    [[nodiscard]] const workflow_step* begin() const noexcept;
    [[nodiscard]] const workflow_step* end() const noexcept;
    [[nodiscard]] std::size_t size() const noexcept;
    [[nodiscard]] bool empty() const noexcept;
    /// Appends a step. Owner thread.
    void push_back(workflow_step step);

private:
    std::vector<workflow_step> items_;
};

/// A named sequence of steps: one case of a decision, or one parallel branch of a fork.
struct workflow_branch {
    /// A decision takes the case whose name equals its value; a fork's branches are named
    /// for the history only.
    std::string name{};
    /// Run in order.
    step_list steps{};
};

/// A task: published to `queue` (on the default exchange) with the instance's data, done
/// by a worker (see task_worker), completed or failed by the event the worker publishes
/// back. Its output is merged into the instance's data.
struct task_step {
    /// Unique within the definition; the task message's `type`.
    std::string name{};
    /// Where the task message goes (routing key on the default exchange).
    std::string queue{};
    /// Attempts and the delays between them (Conductor's retryCount, retryLogic,
    /// retryDelaySeconds, with a cap and jitter).
    retry_policy retry = retry_policy::none();
    /// How long one attempt may take from its publish to its completion event; zero: no
    /// limit (Conductor's responseTimeoutSeconds).
    clock::duration timeout = clock::duration::zero();
    /// What an attempt that runs out of time leads to.
    warren::timeout_policy on_timeout = warren::timeout_policy::retry;
    /// A failed optional task (its attempts spent) does not fail the instance: it ends
    /// completed_with_errors and the flow goes on.
    bool optional = false;
    /// Where the compensation task goes when an instance fails after this task completed;
    /// empty: nothing to undo.
    std::string compensation_queue{};
    /// Attempts of the compensation task.
    retry_policy compensation_retry = retry_policy::none();
};

/// A decision (Conductor's SWITCH): chooses one case by a value taken from the instance's
/// data, `data[key]`, or computed by `choose(data)`; no case of that name: `otherwise`.
/// The choice is recorded, so an instance resumed from a store takes the same branch.
struct decision_step {
    /// Unique within the definition.
    std::string name{};
    /// The data entry whose value names the case (when `choose` is empty).
    std::string key{};
    /// Computes the case's name from the data; runs with the engine's lock held, so it
    /// must not call the engine.
    std::function<std::string(const workflow_data&)> choose{};
    /// The cases, by name.
    std::vector<workflow_branch> cases{};
    /// Taken when no case matches (may be empty: the flow goes on after the decision).
    step_list otherwise{};
};

/// A fork and its join (Conductor's FORK_JOIN + JOIN): every branch runs at once; the step
/// completes when all of them have.
struct fork_step {
    /// Unique within the definition.
    std::string name{};
    /// Run in parallel, each in order.
    std::vector<workflow_branch> branches{};
};

/// One step of a workflow: a task, a decision or a fork; converts from each.
struct workflow_step {
    std::variant<task_step, decision_step, fork_step> kind;

    workflow_step(task_step t) : kind(std::move(t)) {}
    workflow_step(decision_step d) : kind(std::move(d)) {}
    workflow_step(fork_step f) : kind(std::move(f)) {}

    /// The step's name. Thread-safe (const).
    [[nodiscard]] const std::string& name() const noexcept {
        return std::visit([](const auto& s) -> const std::string& { return s.name; }, kind);
    }
};

inline step_list::step_list() noexcept = default;
inline step_list::step_list(std::initializer_list<workflow_step> steps) : items_(steps) {}
inline step_list::step_list(const step_list& other) = default;
inline step_list::step_list(step_list&& other) noexcept = default;
inline step_list& step_list::operator=(const step_list& other) = default;
inline step_list& step_list::operator=(step_list&& other) noexcept = default;
inline step_list::~step_list() = default;
inline const workflow_step* step_list::begin() const noexcept { return items_.data(); }
inline const workflow_step* step_list::end() const noexcept { return items_.data() + items_.size(); }
inline std::size_t step_list::size() const noexcept { return items_.size(); }
inline bool step_list::empty() const noexcept { return items_.empty(); }
inline void step_list::push_back(workflow_step step) { items_.push_back(std::move(step)); }

/// What a whole instance that runs out of time leads to.
enum class workflow_timeout_policy : std::uint8_t {
    fail_and_compensate, ///< timed_out, after compensating its completed steps (Conductor's TIME_OUT_WF)
    alert_only,          ///< an alert is recorded and reported once; it keeps running
};

/// A workflow: named and versioned; instances start on the latest version unless told.
/// @code
/// warren::workflow_definition order{
///     .name = "order", .version = 1,
///     .steps = {
///         warren::task_step{.name = "validate", .queue = "orders"},
///         warren::fork_step{.name = "reserve_and_pay", .branches = {
///             {.name = "stock", .steps = {warren::task_step{.name = "reserve", .queue = "inventory",
///                                                           .compensation_queue = "inventory.release"}}},
///             {.name = "money", .steps = {warren::task_step{.name = "charge", .queue = "payment",
///                                                           .retry = warren::retry_policy::fixed(3, 1s)}}}}},
///         warren::decision_step{.name = "speed", .key = "shipping", .cases = {
///             {.name = "express", .steps = {warren::task_step{.name = "fly", .queue = "shipping.air"}}}},
///             .otherwise = {warren::task_step{.name = "truck", .queue = "shipping.road"}}},
///     },
///     .timeout = std::chrono::minutes(5)};
/// @endcode
/// Thread safety: a value type.
struct workflow_definition {
    /// Its name; instances are started by name.
    std::string name{};
    /// Its version; several versions of one name live side by side.
    std::uint32_t version = 1;
    /// Run in order; step names are unique across the whole definition.
    step_list steps{};
    /// How long an instance may run; zero: no limit (Conductor's timeoutSeconds).
    clock::duration timeout = clock::duration::zero();
    /// What an instance that runs out of time leads to.
    workflow_timeout_policy on_timeout = workflow_timeout_policy::fail_and_compensate;
    /// When a required task fails (its attempts spent), the compensation tasks of the
    /// completed steps run, in reverse order of completion, before the instance ends
    /// failed. A task timeout with fail_and_compensate compensates whatever this says.
    bool compensate_on_failure = true;
    /// A workflow started (latest version) when an instance ends failed or timed_out, with
    /// the failed instance's data plus `failed_instance`, `failed_workflow`, `reason`
    /// (Conductor's failureWorkflow); empty: none.
    std::string failure_workflow{};
};

} // namespace warren
