// A queue's counters as one line of text, so one comparison checks every counter.
#pragma once

#include <cstdint>
#include <string>

#include <warren/stats.hpp>

namespace warren_test {

/// The non-zero counters of a queue, in declaration order: "enqueued=3 dropped.maxlen=1
/// ready=2 ready_bytes=2". Every other counter is zero.
inline std::string counts(const warren::queue_counters& c) {
    std::string out;
    auto add = [&](const char* name, std::uint64_t n) {
        if (n == 0) return;
        if (!out.empty()) out += ' ';
        out += name + ("=" + std::to_string(n));
    };
    add("enqueued", c.enqueued);
    add("refused", c.refused);
    add("delivered", c.delivered);
    add("redelivered", c.redelivered);
    add("acked", c.acked);
    add("requeued", c.requeued);
    add("dead_lettered.expired", c.dead_lettered.expired);
    add("dead_lettered.maxlen", c.dead_lettered.maxlen);
    add("dead_lettered.rejected", c.dead_lettered.rejected);
    add("dropped.expired", c.dropped.expired);
    add("dropped.maxlen", c.dropped.maxlen);
    add("dropped.rejected", c.dropped.rejected);
    add("purged", c.purged);
    add("ready", c.ready);
    add("unacked", c.unacked);
    add("awaiting_callback", c.awaiting_callback);
    add("ready_bytes", c.ready_bytes);
    add("consumers", c.consumers);
    return out;
}

} // namespace warren_test
