// A user object whose destructor does something: a capture, a handler or a message body
// that uses the broker as it goes, to show when and where the broker destroys user objects.
#pragma once

#include <functional>
#include <utility>

namespace warren_test {

/// Runs `on_destroy` when destroyed (held through a shared_ptr, when its last copy goes).
struct destructor_hook {
    explicit destructor_hook(std::function<void()> f) : on_destroy(std::move(f)) {}
    destructor_hook(const destructor_hook&) = delete;
    destructor_hook& operator=(const destructor_hook&) = delete;
    ~destructor_hook() {
        if (on_destroy) on_destroy();
    }
    std::function<void()> on_destroy;
};

} // namespace warren_test
