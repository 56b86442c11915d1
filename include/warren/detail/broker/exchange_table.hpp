#pragma once
/// @file detail/broker/exchange_table.hpp
/// The broker's exchanges: each one's node, found by name or by slot, and the registry of
/// exchange types that declare_exchange makes them from.

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "../../error.hpp"
#include "../../exchange.hpp"
#include "../../field_table.hpp"
#include "../../options.hpp"
#include "../../policy.hpp"
#include "../../stats.hpp"
#include "../core/name_map.hpp"
#include "../core/ref_ptr.hpp"
#include "../core/shared_text.hpp"
#include "../routing/exchange_model.hpp"

namespace warren::detail {

/// An exchange as the broker keeps it: its declaration, its routing table (`impl`), how
/// many bindings leave it, and its counters. Publishers hold a reference; a deleted node
/// stays alive, marked `deleted`, until the last one goes.
template <threading_policy Policy>
struct exchange_node : ref_counted<Policy> {
    std::string name;
    std::string type;
    exchange_options options;
    std::unique_ptr<exchange_base> impl; // null for the default exchange
    std::string alternate;                // alternate-exchange argument, or empty
    ref_ptr<shared_text<Policy>> shared_name; // carried by its messages
    std::uint32_t index = 0;
    bool deleted = false;
    bool had_binding = false;
    std::size_t binding_count = 0;    // bindings from it
    std::size_t exchange_targets = 0; // of those, to other exchanges
    // Counters; relaxed atomics under multi_threaded, plain integers otherwise.
    typename Policy::template atomic<std::uint64_t> published{0};
    typename Policy::template atomic<std::uint64_t> unroutable{0};
    typename Policy::template atomic<std::uint64_t> returned{0};
    typename Policy::template atomic<std::uint64_t> nacked{0};

    /// Its counters, as exchange_stats reports them.
    [[nodiscard]] exchange_counters counters() const noexcept {
        exchange_counters c;
        c.published = published.load(std::memory_order_relaxed);
        c.unroutable = unroutable.load(std::memory_order_relaxed);
        c.routed = c.published - c.unroutable;
        c.returned = returned.load(std::memory_order_relaxed);
        c.nacked = nacked.load(std::memory_order_relaxed);
        return c;
    }
    /// Whether auto-delete applies now: it had bindings and has none left.
    [[nodiscard]] bool unused_auto_delete() const noexcept {
        return options.auto_delete && had_binding && binding_count == 0 && !deleted;
    }
};

/// The exchanges by name and by slot (a binding names its exchange by slot), and the
/// exchange types. Not thread-safe: the broker's topology lock guards it.
template <threading_policy Policy>
class exchange_table {
public:
    using node = exchange_node<Policy>;

    /// Makes type E available under E::type_name; a name registered twice is
    /// precondition_failed.
    template <exchange_type E>
    void register_type() {
        const std::string_view type = E::type_name;
        if (types_.contains(type)) {
            raise(reply_code::precondition_failed, "exchange type " + detail::quoted(type) + " is already registered");
        }
        types_.emplace(std::string(type), +[]() -> std::unique_ptr<exchange_base> {
            return std::make_unique<exchange_model<E>>();
        });
    }
    /// Whether `type` is registered.
    [[nodiscard]] bool has_type(std::string_view type) const { return types_.contains(type); }

    /// Adds an exchange of a registered `type` (the default exchange, named "", has no
    /// routing table of its own). Its routing cache holds `cache_capacity` keys.
    node& add(std::string_view name, std::string_view type, const exchange_options& options,
              std::size_t cache_capacity) {
        auto made = make_ref<node>();
        made->name = std::string(name);
        made->type = std::string(type);
        made->shared_name = make_ref<shared_text<Policy>>(made->name);
        made->options = options;
        if (!name.empty()) {
            made->impl = types_.find(type)->second();
            made->impl->set_cache_capacity(cache_capacity);
        }
        if (const field_value* alternate = options.arguments.find("alternate-exchange")) {
            made->alternate = *alternate->get_if<std::string>();
        }
        made->index = take_slot(slots_, free_);
        slots_[made->index] = made;
        by_name_.emplace(made->name, made->index);
        return *made;
    }

    /// The exchange named `name`, or null.
    [[nodiscard]] node* find(std::string_view name) const {
        auto it = by_name_.find(name);
        return it == by_name_.end() ? nullptr : slots_[it->second].get();
    }
    /// The exchange named `name`; not_found (404) if there is none.
    [[nodiscard]] node& get(std::string_view name) const {
        node* found = find(name);
        if (found == nullptr) raise(reply_code::not_found, "no exchange " + detail::quoted(name));
        return *found;
    }
    /// The exchange in slot `index`: a reference to keep, or empty if the slot is free.
    [[nodiscard]] const ref_ptr<node>& slot(std::uint32_t index) const { return slots_[index]; }

    /// Removes `exchange`, marked deleted, and hands back the table's reference: the caller
    /// lets go of it once its locks are released (the exchange type is user code).
    [[nodiscard]] ref_ptr<node> remove(node& exchange) {
        exchange.deleted = true;
        by_name_.erase(by_name_.find(std::string_view(exchange.name)));
        const std::uint32_t index = exchange.index;
        free_.push_back(index);
        return std::move(slots_[index]);
    }

    /// Calls `f(node&)` for every exchange.
    template <class F>
    void for_each(F&& f) const {
        for (const auto& x : slots_) {
            if (x) f(*x);
        }
    }

private:
    using factory = std::unique_ptr<exchange_base> (*)();
    std::map<std::string, factory, std::less<>> types_;
    name_map<std::uint32_t> by_name_;
    std::vector<ref_ptr<node>> slots_; // by index; empty when free
    std::vector<std::uint32_t> free_;
};

} // namespace warren::detail
