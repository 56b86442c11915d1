#pragma once
/// @file patterns/engine/store.hpp
/// workflow_store: where process_engine keeps instance state (a small interface), and
/// memory_store, its in-memory implementation.

#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "instance.hpp"

namespace warren {

/// Where a process_engine keeps its instances. The engine saves an instance, whole, each
/// time it changes, before it publishes what the change calls for (a task, a retry), so
/// that a store never lags behind the messages: an engine made over a store that holds
/// running instances resumes them (process_engine::resume()).
///
/// Thread safety: the engine calls a store with its own lock held, one call at a time;
/// a store must not call the engine. Exceptions from save() go out of the engine call that
/// made the change (its state in memory already changed).
class workflow_store {
public:
    virtual ~workflow_store() = default;
    /// Saves `instance`, replacing what was saved under its id.
    virtual void save(const workflow_instance& instance) = 0;
    /// Every instance saved, in any status, in any order.
    [[nodiscard]] virtual std::vector<workflow_instance> load_all() = 0;
};

/// A workflow_store in memory: what an engine keeps when nothing must survive the process.
/// @code
/// warren::memory_store store;
/// warren::process_engine engine(broker, store);
/// @endcode
/// Thread safety: every member is thread-safe (one mutex), so a test may read it while
/// the engine runs on other threads.
class memory_store final : public workflow_store {
public:
    /// Saves a copy of `instance`. Thread-safe.
    void save(const workflow_instance& instance) override {
        const std::scoped_lock lock(mutex_);
        instances_.insert_or_assign(instance.id, instance);
        ++saves_;
    }
    /// Copies of every instance saved. Thread-safe.
    [[nodiscard]] std::vector<workflow_instance> load_all() override {
        const std::scoped_lock lock(mutex_);
        std::vector<workflow_instance> all{};
        all.reserve(instances_.size());
        for (const auto& [id, instance] : instances_) all.push_back(instance);
        return all;
    }
    /// A copy of the instance saved under `id`, if any. Thread-safe.
    [[nodiscard]] std::optional<workflow_instance> find(std::string_view id) const {
        const std::scoped_lock lock(mutex_);
        const auto found = instances_.find(id);
        if (found == instances_.end()) return std::nullopt;
        return found->second;
    }
    /// How many save() calls it had. Thread-safe.
    [[nodiscard]] std::size_t saves() const {
        const std::scoped_lock lock(mutex_);
        return saves_;
    }

private:
    mutable std::mutex mutex_;
    std::map<std::string, workflow_instance, std::less<>> instances_;
    std::size_t saves_ = 0;
};

} // namespace warren
