#pragma once
/// @file detail/routing/exchange_model.hpp
/// Type erasure that lets one broker hold exchanges of any exchange_type.

#include <cstddef>
#include <memory>
#include <string_view>

#include "../../exchange.hpp"
#include "../../stats.hpp"

namespace warren::detail {

/// The broker's view of an exchange, whatever its type.
class exchange_base {
public:
    exchange_base(bool routes_once, bool by_key_only) noexcept : routes_once_(routes_once), by_key_only_(by_key_only) {}
    virtual ~exchange_base() = default;
    exchange_base(const exchange_base&) = delete;
    exchange_base& operator=(const exchange_base&) = delete;
    /// Whether route() never adds a destination twice (exchange_type's optional promise).
    [[nodiscard]] bool routes_each_destination_once() const noexcept { return routes_once_; }
    /// Whether route() reads the routing key alone (exchange_type's optional promise).
    [[nodiscard]] bool routes_by_key_only() const noexcept { return by_key_only_; }
    virtual void bind(destination d, std::string_view key, const field_table& args) = 0;
    virtual void unbind(destination d, std::string_view key, const field_table& args) = 0;
    virtual void route(const routing_view& msg, destination_list& out) const = 0;
    /// Sizes the routing cache of exchange types that have one; others ignore it.
    virtual void set_cache_capacity(std::size_t entries) = 0;
    /// What that cache did since it was sized; zeros for types without one.
    [[nodiscard]] virtual topic_cache_stats cache_stats() const = 0;

private:
    bool routes_once_;
    bool by_key_only_;
};

template <exchange_type E>
class exchange_model final : public exchange_base {
public:
    exchange_model() : exchange_base(promises_routes_once(), promises_key_only()) {}
    void bind(destination d, std::string_view key, const field_table& args) override { impl_.bind(d, key, args); }
    void unbind(destination d, std::string_view key, const field_table& args) override { impl_.unbind(d, key, args); }
    void route(const routing_view& msg, destination_list& out) const override { impl_.route(msg, out); }
    void set_cache_capacity([[maybe_unused]] std::size_t entries) override {
        if constexpr (requires { impl_.set_cache_capacity(entries); }) impl_.set_cache_capacity(entries);
    }
    [[nodiscard]] topic_cache_stats cache_stats() const override {
        if constexpr (requires { impl_.cache_stats(); }) return impl_.cache_stats();
        else return {};
    }

private:
    static constexpr bool promises_routes_once() {
        if constexpr (requires { E::routes_each_destination_once; }) return E::routes_each_destination_once;
        else return false;
    }
    static constexpr bool promises_key_only() {
        if constexpr (requires { E::routes_by_key_only; }) return E::routes_by_key_only;
        else return false;
    }
    E impl_;
};

} // namespace warren::detail
