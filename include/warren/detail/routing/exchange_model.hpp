#pragma once
/// @file detail/routing/exchange_model.hpp
/// Type erasure that lets one broker hold exchanges of any exchange_type.

#include <cstddef>
#include <memory>
#include <string_view>

#include "../../exchange.hpp"

namespace warren::detail {

/// The broker's view of an exchange, whatever its type.
class exchange_base {
public:
    virtual ~exchange_base() = default;
    virtual void bind(destination d, std::string_view key, const field_table& args) = 0;
    virtual void unbind(destination d, std::string_view key, const field_table& args) = 0;
    virtual void route(const routing_view& msg, destination_list& out) const = 0;
    /// Sizes the routing cache of exchange types that have one; others ignore it.
    virtual void set_cache_capacity(std::size_t entries) = 0;
};

template <exchange_type E>
class exchange_model final : public exchange_base {
public:
    void bind(destination d, std::string_view key, const field_table& args) override { impl_.bind(d, key, args); }
    void unbind(destination d, std::string_view key, const field_table& args) override { impl_.unbind(d, key, args); }
    void route(const routing_view& msg, destination_list& out) const override { impl_.route(msg, out); }
    void set_cache_capacity([[maybe_unused]] std::size_t entries) override {
        if constexpr (requires { impl_.set_cache_capacity(entries); }) impl_.set_cache_capacity(entries);
    }

private:
    E impl_;
};

} // namespace warren::detail
