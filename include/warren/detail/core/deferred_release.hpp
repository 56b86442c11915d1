#pragma once
/// @file detail/core/deferred_release.hpp
/// References a broker lets go of while it holds a lock, dropped once the lock is released.

#include <cstddef>
#include <utility>
#include <vector>

#include "../../config.hpp"
#include "ref_ptr.hpp"

namespace warren::detail {

/// The last reference to a message, a consumer, a queue or an exchange may be one that a
/// broker lets go of while it holds a lock or walks a container. Dropping it there would
/// run user code (a body's destructor, a callback's captures, an exchange type's
/// destructor) that may use the broker again: a deadlock under multi_threaded, a container
/// changed under its walker under single_threaded. Such references are deferred instead,
/// and dropped when the thread's outermost scope ends, which every locking operation opens
/// before it takes its locks, so that it ends after they are released.
///
/// Per thread and reused: once warm, deferring allocates nothing.
class deferred_release {
public:
    /// Keeps `ref` until the thread's outermost scope ends. A scope must be open.
    template <class T>
    static void defer(ref_ptr<T>&& ref) {
        if (!ref) return;
        WARREN_ASSERT(depth() > 0, "deferred_release::defer outside a scope");
        items().push_back(item{ref.get(), &drop<T>}); // may throw: `ref` still owns it then
        (void)ref.detach();
        pending() = true;
    }

    /// Opened by every operation that takes a lock, before it takes it. Cheap: two
    /// thread-local integers, the list is touched only when something was deferred.
    class scope {
    public:
        scope() noexcept { ++depth(); }
        scope(const scope&) = delete;
        scope& operator=(const scope&) = delete;
        ~scope() {
            if (--depth() == 0 && pending()) drop_all();
        }
    };

private:
    struct item {
        void* object;
        void (*drop)(void*) noexcept;
    };
    template <class T>
    static void drop(void* object) noexcept {
        (void)ref_ptr<T>::adopt(static_cast<T*>(object)); // the temporary drops the reference
    }
    // Trivially destructible, so reading them costs no thread-local guard.
    static std::size_t& depth() noexcept {
        thread_local constinit std::size_t open = 0;
        return open;
    }
    static bool& pending() noexcept {
        thread_local constinit bool some = false;
        return some;
    }
    static std::vector<item>& items() noexcept {
        thread_local std::vector<item> list;
        return list;
    }
    static void drop_all() noexcept {
        // What is dropped may use the broker and defer more: that goes to a fresh list,
        // dropped by its own scope, while this one is walked.
        std::vector<item> doomed;
        doomed.swap(items());
        pending() = false;
        for (const item& i : doomed) i.drop(i.object);
        doomed.clear();
        std::vector<item>& list = items();
        if (list.empty() && list.capacity() < doomed.capacity()) list.swap(doomed); // keep the storage
    }
};

} // namespace warren::detail
