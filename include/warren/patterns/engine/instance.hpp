#pragma once
/// @file patterns/engine/instance.hpp
/// workflow_instance: the state and history of one run of a workflow, as process_engine
/// keeps it, a workflow_store saves it and the visibility queries return it.

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "../../clock.hpp"
#include "data.hpp"

namespace warren {

/// Where an instance is (Conductor's workflow statuses, plus compensating).
enum class workflow_status : std::uint8_t {
    running,      ///< steps are in flight or due
    compensating, ///< failed or timed out; compensation tasks run before it ends
    completed,    ///< every step done
    failed,       ///< a required task failed (after its retries and any compensation)
    timed_out,    ///< ran out of time under fail_and_compensate (after compensation)
    terminated,   ///< ended by terminate()
};

/// Where one step of an instance is.
enum class step_status : std::uint8_t {
    in_progress,           ///< a task attempt published, its result awaited; a fork awaiting its join
    waiting_retry,         ///< an attempt failed; the next one is due at retry_at
    completed,             ///< done (a decision: its case chosen)
    completed_with_errors, ///< an optional task that failed: the flow went on
    failed,                ///< a required task that failed: the instance failed
    cancelled,             ///< in flight when the instance ended
    compensating,          ///< its compensation task is in flight or due
    compensated,           ///< its compensation task completed
    compensation_failed,   ///< its compensation task failed (its attempts spent)
};

/// What a history entry records.
enum class history_event : std::uint8_t {
    workflow_started,
    task_scheduled,   ///< an attempt published
    task_completed,
    task_failed,      ///< an attempt failed (a retry may follow)
    task_timed_out,   ///< an attempt ran out of time
    retry_scheduled,  ///< the next attempt is due (detail: in how many ns)
    decided,          ///< a decision chose a case (detail: its name)
    forked,
    joined,
    alert,            ///< alert_only timeout (step empty: the workflow's)
    compensation_scheduled,
    compensation_completed,
    compensation_failed,
    workflow_completed,
    workflow_failed,
    workflow_timed_out,
    workflow_terminated,
    failure_workflow_started, ///< detail: the failure workflow's instance id
    resumed,          ///< the engine picked it up from its store
    unroutable,       ///< a task message that no queue took
};

namespace detail {
inline constexpr std::array<std::string_view, 6> workflow_status_names{"running",   "compensating", "completed",
                                                                        "failed",    "timed_out",    "terminated"};
inline constexpr std::array<std::string_view, 9> step_status_names{
    "in_progress", "waiting_retry", "completed",   "completed_with_errors", "failed",
    "cancelled",   "compensating",  "compensated", "compensation_failed"};
inline constexpr std::array<std::string_view, 20> history_event_names{
    "workflow_started",       "task_scheduled",         "task_completed",      "task_failed",
    "task_timed_out",         "retry_scheduled",        "decided",             "forked",
    "joined",                 "alert",                  "compensation_scheduled", "compensation_completed",
    "compensation_failed",    "workflow_completed",     "workflow_failed",     "workflow_timed_out",
    "workflow_terminated",    "failure_workflow_started", "resumed",           "unroutable"};

template <class Enum, std::size_t N>
[[nodiscard]] std::optional<Enum> enum_from_name(const std::array<std::string_view, N>& names, std::string_view text) {
    for (std::size_t i = 0; i < N; ++i) {
        if (names[i] == text) return static_cast<Enum>(i);
    }
    return std::nullopt;
}
} // namespace detail

/// The status's name, e.g. `timed_out`. Thread-safe.
[[nodiscard]] inline std::string_view to_string(workflow_status s) noexcept {
    return detail::workflow_status_names[static_cast<std::size_t>(s)];
}
/// The status's name, e.g. `waiting_retry`. Thread-safe.
[[nodiscard]] inline std::string_view to_string(step_status s) noexcept {
    return detail::step_status_names[static_cast<std::size_t>(s)];
}
/// The event's name, e.g. `retry_scheduled`. Thread-safe.
[[nodiscard]] inline std::string_view to_string(history_event e) noexcept {
    return detail::history_event_names[static_cast<std::size_t>(e)];
}

/// Whether an instance in status `s` has ended. Thread-safe.
[[nodiscard]] constexpr bool is_final(workflow_status s) noexcept {
    return s != workflow_status::running && s != workflow_status::compensating;
}

/// One entry of an instance's history.
struct history_entry {
    /// The step it concerns; empty for the workflow itself.
    std::string step{};
    /// The attempt it concerns (0 where none).
    std::uint32_t attempt = 0;
    history_event event = history_event::workflow_started;
    /// When, on the broker's clock.
    clock::time_point at{};
    /// The error of a failure, the case a decision chose, the delay of a retry, ...
    std::string detail{};

    friend bool operator==(const history_entry&, const history_entry&) = default;
};

/// The state of one step of an instance: tasks, decisions and forks alike.
struct step_state {
    std::string name{};
    step_status status = step_status::in_progress;
    /// The current attempt of a task (1 for the first), or of its compensation while
    /// compensating.
    std::uint32_t attempt = 0;
    /// The id of the current attempt's message: what its completion event must carry.
    std::string task_id{};
    /// When the step was first reached.
    clock::time_point started_at{};
    /// When it completed or failed.
    std::optional<clock::time_point> ended_at{};
    /// When the attempt in flight runs out of time, if it has a timeout.
    std::optional<clock::time_point> deadline{};
    /// When the next attempt is due (waiting_retry).
    std::optional<clock::time_point> retry_at{};
    /// Whether the attempt in flight was reported under alert_only.
    bool alerted = false;
    /// A decision's chosen case (empty name: otherwise).
    std::string branch{};
    /// A task's output.
    workflow_data output{};
    /// The last error.
    std::string error{};
    /// Order in which steps completed (1, 2, ...): compensation runs in reverse of it.
    std::uint64_t completion_order = 0;

    /// How long it took, or ran so far if it has not ended. Thread-safe (const).
    [[nodiscard]] clock::duration duration(clock::time_point now) const noexcept {
        return ended_at.value_or(now) - started_at;
    }

    friend bool operator==(const step_state&, const step_state&) = default;
};

/// One run of a workflow: what the engine keeps, the store saves and the queries return.
/// Thread safety: a value type (the engine hands out copies).
struct workflow_instance {
    std::string id{};
    std::string workflow{};
    std::uint32_t version = 1;
    workflow_status status = workflow_status::running;
    /// What a compensating instance ends as (failed or timed_out).
    workflow_status ending = workflow_status::failed;
    /// What it was started with.
    workflow_data input{};
    /// Its data now: the input with every completed task's output merged in.
    workflow_data data{};
    /// Why it failed, timed out or was terminated.
    std::string error{};
    /// The step whose failure or timeout ended it.
    std::string failed_step{};
    clock::time_point started_at{};
    std::optional<clock::time_point> ended_at{};
    /// When the whole instance runs out of time, if its workflow has a timeout.
    std::optional<clock::time_point> deadline{};
    /// Whether its workflow timeout was reported under alert_only.
    bool alerted = false;
    /// Steps reached so far, in the order they were reached.
    std::vector<step_state> steps{};
    /// The steps whose compensation runs, in order; compensation_next is the one at hand.
    std::vector<std::string> compensation_plan{};
    std::size_t compensation_next = 0;
    /// The failure workflow's instance, once started.
    std::string failure_instance{};
    std::vector<history_entry> history{};

    /// The state of step `name`, or null if it was not reached. Thread-safe (const).
    [[nodiscard]] const step_state* find_step(std::string_view name) const noexcept {
        for (const auto& s : steps) {
            if (s.name == name) return &s;
        }
        return nullptr;
    }
    /// How long it took, or ran so far. Thread-safe (const).
    [[nodiscard]] clock::duration duration(clock::time_point now) const noexcept {
        return ended_at.value_or(now) - started_at;
    }

    friend bool operator==(const workflow_instance&, const workflow_instance&) = default;
};

} // namespace warren
