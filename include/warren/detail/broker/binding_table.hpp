#pragma once
/// @file detail/broker/binding_table.hpp
/// binding_table: the broker's bindings, kept in step with each exchange's routing table,
/// and which auto-delete exchanges lost their last one.

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../../config.hpp"
#include "../../exchange.hpp"
#include "../../field_table.hpp"
#include "../routing/binding_graph.hpp"
#include "exchange_table.hpp"

namespace warren::detail {

/// Every binding twice over: once in the graph (found by what it is, by source and by
/// target) and once in its exchange's routing table, which this keeps in step. Answers,
/// when bindings go, which auto-delete exchanges they left unused; deleting those is the
/// broker's to do. Not thread-safe: the topology lock guards it.
template <threading_policy Policy>
class binding_table {
public:
    using node = exchange_node<Policy>;

    explicit binding_table(const exchange_table<Policy>& exchanges) noexcept : exchanges_(&exchanges) {}

    /// Binds `target` to `source`. The same binding twice is one. The exchange may refuse
    /// the arguments: nothing has changed yet, and if recording the binding fails the
    /// exchange forgets it again, so a refusal leaves no trace.
    void add(destination target, node& source, std::string_view key, const field_table& args) {
        binding b{source.index, target, std::string(key), args};
        if (graph_.contains(b)) return;
        source.impl->bind(target, key, args);
        WARREN_TRY {
            graph_.add(std::move(b));
        }
        WARREN_CATCH_ALL {
            source.impl->unbind(target, key, args);
            WARREN_RETHROW;
        }
        ++source.binding_count;
        if (target.type() == destination::kind::exchange) ++source.exchange_targets;
        source.had_binding = true;
    }

    /// Removes a binding (a missing one is nothing). Returns whether `source` is now an
    /// auto-delete exchange without bindings.
    bool remove(destination target, node& source, std::string_view key, const field_table& args) {
        const binding b{source.index, target, std::string(key), args};
        if (!graph_.remove(b)) return false;
        forget(source, b);
        return source.unused_auto_delete();
    }

    /// Removes every binding to `target` (a queue or an exchange that goes) and returns
    /// the auto-delete exchanges that this left without bindings.
    [[nodiscard]] std::vector<node*> remove_to(destination target) {
        std::vector<node*> unused;
        for (const binding& b : graph_.take_to(target)) {
            node* source = exchanges_->slot(b.source).get();
            if (source == nullptr) continue;
            forget(*source, b);
            if (source->unused_auto_delete()) unused.push_back(source); // once: its count hit 0
        }
        return unused;
    }

    /// Forgets every binding from `exchange`, which goes with its routing table.
    void remove_from(node& exchange) {
        (void)graph_.take_from(exchange.index);
        exchange.binding_count = 0;
        exchange.exchange_targets = 0;
    }

    /// Calls `f(const binding&)` for every binding from exchange slot `source`.
    template <class F>
    void for_each_from(std::uint32_t source, F&& f) const {
        graph_.for_each_from(source, std::forward<F>(f));
    }

private:
    /// The binding's exchange forgets it; it is already out of the graph.
    static void forget(node& source, const binding& b) {
        source.impl->unbind(b.target, b.key, b.arguments);
        --source.binding_count;
        if (b.target.type() == destination::kind::exchange) --source.exchange_targets;
    }

    const exchange_table<Policy>* exchanges_;
    binding_graph graph_;
};

} // namespace warren::detail
