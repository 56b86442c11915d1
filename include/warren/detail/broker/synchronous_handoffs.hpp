#pragma once
/// @file detail/broker/synchronous_handoffs.hpp
/// synchronous_handoffs: the queues whose synchronous consumers a publish handed messages
/// to, and the runs of their callbacks before the publish returns, nested on one thread.

#include <array>
#include <cstddef>
#include <exception>
#include <utility>
#include <vector>

#include "../core/deferred_release.hpp"
#include "../core/ref_ptr.hpp"

namespace warren::detail {

/// How deeply publishes from synchronous callbacks nest on one thread before their
/// receivers wait for the callback at this depth to return.
inline constexpr std::size_t max_synchronous_depth = 8;

/// Synchronous consumers (consumer_options::synchronous) run their callbacks inside the
/// publish that hands them a message. The router notes each such queue while a publish
/// collects (`collecting`, topology lock held); once the publish has released its locks,
/// run() has each queue's `Runner` (its broker's dispatcher) run the callbacks.
///
/// A callback that publishes runs the receivers of that publish nested, like a signal
/// emitted from a slot, up to `max_depth`; the receivers of a publish deeper than that,
/// and of anything but a publish (a dead letter of an ack, a requeue), wait for dispatch()
/// (see taking()). A consumer is never re-entered: the queue hands a message for one whose
/// callback runs on this thread to be run by dispatch(), and one for a consumer whose
/// callback runs on another thread is taken by that thread's run once the callback
/// returns. So a cycle of publishes ends inside the publish, and the stack stays bounded.
///
/// Per thread, per broker type: the notes of one thread never reach another. Once warm,
/// noting and running allocate nothing.
template <class Queue, class Runner>
class synchronous_handoffs {
    struct noted;
    struct state;

public:
    static constexpr std::size_t max_depth = max_synchronous_depth;

    /// While it lives, handed() notes queues for `runner`. Opened by a publish around its
    /// routing, which calls keep() once routing succeeded; without that (the publish
    /// threw), what it noted is dropped, its messages left handed off for dispatch() to run.
    /// Costs two thread-local words on the publish path.
    class collecting {
    public:
        explicit collecting(Runner& runner) noexcept
            : previous_(collector()), first_(any_pending() ? get().pending.size() : 0) {
            collector() = &runner;
        }
        collecting(const collecting&) = delete;
        collecting& operator=(const collecting&) = delete;
        ~collecting() {
            collector() = previous_;
            if (kept_ || !any_pending()) return;
            std::vector<noted>& pending = get().pending;
            while (pending.size() > first_) {
                deferred_release::defer(std::move(pending.back().queue)); // under the caller's lock
                pending.pop_back();
            }
            any_pending() = !pending.empty();
        }
        /// Routing succeeded: what was noted is to run.
        void keep() noexcept { kept_ = true; }

    private:
        Runner* previous_;
        std::size_t first_;
        bool kept_ = false;
    };

    /// Whether a message handed to a synchronous consumer now is to run inside a publish:
    /// one is collecting on this thread, less than `max_depth` runs deep.
    [[nodiscard]] static bool taking() noexcept { return collector() != nullptr && depth() < max_depth; }

    /// Notes that `queue` handed a message to a synchronous consumer while taking().
    static void handed(const ref_ptr<Queue>& queue) {
        get().pending.push_back(noted{collector(), queue});
        any_pending() = true;
    }

    /// Runs the callbacks of every noted queue's synchronous consumers, each taken from its
    /// queue (Queue::take_synchronous) and run by its runner's `run_synchronous(pending,
    /// queue, first_failure)`. Rethrows the first failure the runners kept (a callback's
    /// exception with no error handler) once all have run. No lock held.
    ///
    /// A runner is used only once its queue gave a message: the queues of a destroyed
    /// broker are closed and give none.
    static void run() {
        if (!any_pending()) return; // the publish handed nothing to a synchronous consumer
        state& s = get();
        std::vector<noted>& batch = s.batches[depth()]; // below max_depth: taking() noted these
        struct nested {
            state& s;
            std::vector<noted>& batch;
            explicit nested(state& st, std::vector<noted>& b) noexcept : s(st), batch(b) { ++depth(); }
            nested(const nested&) = delete;
            nested& operator=(const nested&) = delete;
            ~nested() {
                batch.clear(); // no lock held: a queue's last reference may go here
                --depth();
                any_pending() = !s.pending.empty(); // left by a run that threw
            }
        } const level(s, batch);
        std::exception_ptr first_failure;
        while (!s.pending.empty()) {
            batch.swap(s.pending); // publishes from the callbacks note into the emptied list
            any_pending() = false;
            for (noted& n : batch) {
                while (auto pending = n.queue->take_synchronous()) n.runner->run_synchronous(*pending, *n.queue, first_failure);
            }
            batch.clear();
        }
        if (first_failure) std::rethrow_exception(first_failure);
    }

private:
    struct noted {
        Runner* runner;
        ref_ptr<Queue> queue;
    };
    struct state {
        std::vector<noted> pending;
        std::array<std::vector<noted>, max_depth> batches; // one per depth, kept warm
    };
    static state& get() {
        thread_local state s;
        return s;
    }
    // Read on every publish: trivially destructible, so they cost no thread-local guard.
    static bool& any_pending() noexcept {
        thread_local constinit bool some = false;
        return some;
    }
    /// The runner of the publish collecting on this thread, if any.
    static Runner*& collector() noexcept {
        thread_local constinit Runner* current = nullptr;
        return current;
    }
    /// How many runs are nested on this thread.
    static std::size_t& depth() noexcept {
        thread_local constinit std::size_t runs = 0;
        return runs;
    }
};

} // namespace warren::detail
