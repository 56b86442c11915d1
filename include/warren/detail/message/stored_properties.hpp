#pragma once
/// @file detail/message/stored_properties.hpp
/// stored_properties: a stored message's AMQP properties, out of line and only when set.

#include <new>
#include <type_traits>
#include <utility>

#include "../../properties.hpp"
#include "message_pool.hpp"

namespace warren::detail {

/// What a message that sets no property reads as its properties: a default-constructed
/// warren::properties. Thread-safe (immutable once made).
[[nodiscard]] inline const properties& no_properties() noexcept {
    static const properties none;
    return none;
}

/// Whether `p` sets any property, that is differs from a default-constructed
/// warren::properties: a test of each member, far cheaper than moving and destroying them.
[[nodiscard]] inline bool sets_properties(const properties& p) noexcept {
    // Every member by name: a member added to warren::properties stops this binding from
    // compiling until it is tested here too.
    const auto& [content_type, content_encoding, headers, delivery_mode, priority, correlation_id, reply_to, expiration,
                 message_id, timestamp, message_type, user_id, app_id] = p;
    return content_type || content_encoding || !headers.empty() || delivery_mode || priority || correlation_id ||
           reply_to || expiration || message_id || timestamp || message_type || user_id || app_id;
}

/// A stored message's properties. A message that sets none (most of them) carries a null
/// pointer and no storage; one that sets some has them moved into a block of their own,
/// from the message pool (message_pool). Immutable once made.
/// Thread safety: as the stored message that holds it.
template <class Policy>
class stored_properties {
public:
    /// The pool its blocks come from.
    using pool = typename message_pool<Policy>::template type<sizeof(properties)>;

    /// None when `set` is null, else `*set` moved into a block. Only the allocation can
    /// throw, before anything is moved: `*set` is untouched then.
    explicit stored_properties(properties* set) : p_(set != nullptr ? store(std::move(*set)) : nullptr) {}
    stored_properties(const stored_properties&) = delete;
    stored_properties& operator=(const stored_properties&) = delete;
    ~stored_properties() {
        if (p_ == nullptr) return;
        p_->~properties();
        pool::give(p_);
    }

    /// The properties, or no_properties() when none were set.
    [[nodiscard]] const properties& get() const noexcept { return p_ != nullptr ? *p_ : no_properties(); }

private:
    static_assert(std::is_nothrow_move_constructible_v<properties>);
    static_assert(alignof(properties) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__);

    static properties* store(properties&& p) {
        void* const block = pool::take();
        return ::new (block) properties(std::move(p));
    }

    properties* p_;
};

} // namespace warren::detail
