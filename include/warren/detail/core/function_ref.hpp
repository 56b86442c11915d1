#pragma once
/// @file detail/core/function_ref.hpp
/// function_ref: a non-owning reference to a callable, so that a member taking one need
/// not be a template.

#include <memory>
#include <type_traits>
#include <utility>

namespace warren::detail {

template <class Signature>
class function_ref;

/// Refers to a callable for as long as the callable lives; copying it copies the
/// reference. Empty when default-constructed.
template <class R, class... Args>
class function_ref<R(Args...)> {
public:
    function_ref() noexcept = default;
    template <class F>
        requires(!std::is_same_v<std::remove_cvref_t<F>, function_ref> && std::is_invocable_r_v<R, F&, Args...>)
    function_ref(F&& f) noexcept // NOLINT(google-explicit-constructor): used like a parameter type
        : object_(const_cast<void*>(static_cast<const void*>(std::addressof(f)))),
          call_([](void* object, Args... args) -> R {
              return (*static_cast<std::remove_reference_t<F>*>(object))(std::forward<Args>(args)...);
          }) {}

    [[nodiscard]] explicit operator bool() const noexcept { return call_ != nullptr; }
    R operator()(Args... args) const { return call_(object_, std::forward<Args>(args)...); }

private:
    void* object_ = nullptr;
    R (*call_)(void*, Args...) = nullptr;
};

} // namespace warren::detail
