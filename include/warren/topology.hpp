#pragma once
/// @file topology.hpp
/// topology_snapshot: a broker's exchanges, queues, bindings and consumers at one moment,
/// and its Graphviz DOT picture.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "field_table.hpp"
#include "options.hpp"
#include "stats.hpp"

namespace warren {

/// What basic_broker::snapshot() saw: a copy, so it stays valid while the broker changes.
///
/// Thread safety: a value type.
struct topology_snapshot {
    struct exchange {
        std::string name; ///< "" is the default exchange
        std::string type;
        bool durable = false;
        bool auto_delete = false;
        bool internal = false;
        field_table arguments;
        exchange_counters counters;
    };
    struct queue {
        std::string name;
        queue_options options;
        queue_counters counters;
    };
    struct binding {
        std::string source;            ///< an exchange
        std::string destination;       ///< a queue, or an exchange when to_exchange
        bool to_exchange = false;
        std::string key;
        field_table arguments;
    };
    struct consumer {
        std::string queue;
        std::string tag;
        ack_mode ack = ack_mode::automatic;
        std::uint16_t prefetch = 0;
        bool exclusive = false;
        std::int32_t priority = 0;
        bool active = true; ///< false for a waiting consumer of a single-active-consumer queue
    };

    std::vector<exchange> exchanges; ///< by name
    std::vector<queue> queues;       ///< in declaration order
    std::vector<binding> bindings;   ///< by source, destination, key
    std::vector<consumer> consumers; ///< by queue (declaration order), then rotation order

    /// The exchange or queue of that name, or null.
    [[nodiscard]] const exchange* find_exchange(std::string_view name) const noexcept {
        for (const auto& x : exchanges) {
            if (x.name == name) return &x;
        }
        return nullptr;
    }
    [[nodiscard]] const queue* find_queue(std::string_view name) const noexcept {
        for (const auto& q : queues) {
            if (q.name == name) return &q;
        }
        return nullptr;
    }
};

/// What to_dot() draws.
struct dot_options {
    /// Draw the predeclared exchanges (amq.*) even when nothing is bound to or from them.
    bool unused_predeclared = false;
    /// Draw consumers as small nodes hanging off their queues.
    bool consumers = true;
    /// Put each queue's ready and unacked counts in its label.
    bool counts = true;
};

namespace detail {

/// A DOT string literal: quotes and backslashes escaped, newlines as \n.
inline std::string dot_quoted(std::string_view text) {
    std::string out = "\"";
    for (const char c : text) {
        if (c == '"' || c == '\\') out += '\\';
        if (c == '\n') {
            out += "\\n";
            continue;
        }
        out += c;
    }
    out += '"';
    return out;
}

/// A field table in one line, as binding labels show it: "x-match=all, format=pdf".
inline std::string describe_table(const field_table& table) {
    std::string out;
    for (const auto& entry : table) {
        if (!out.empty()) out += ", ";
        out += entry.name;
        out += '=';
        const field_value& v = entry.value;
        if (const auto* s = v.get_if<std::string>()) out += *s;
        else if (const auto* i = v.get_if<std::int64_t>()) out += std::to_string(*i);
        else if (const auto* b = v.get_if<bool>()) out += *b ? "true" : "false";
        else if (const auto* d = v.get_if<double>()) out += std::to_string(*d);
        else if (v.is_void()) out += "(void)";
        else out += "...";
    }
    return out;
}

inline std::string string_argument(const field_table& table, std::string_view name) {
    const std::string* s = table.find_string(name);
    return s == nullptr ? std::string() : *s;
}

} // namespace detail

/// The topology as a Graphviz digraph: exchanges are boxes (internal ones dashed), queues
/// are cylinders, bindings are edges labelled with their key (and arguments), alternate
/// exchanges are dashed edges, dead-letter exchanges dotted ones, and consumers hang off
/// their queues. The default exchange is left out: it is implicitly bound to every queue.
/// Render with `dot -Tsvg topology.dot -o topology.svg`.
inline std::string to_dot(const topology_snapshot& topology, const dot_options& options = {}) {
    using detail::dot_quoted;
    auto exchange_id = [](std::string_view name) { return dot_quoted("x:" + std::string(name)); };
    auto queue_id = [](std::string_view name) { return dot_quoted("q:" + std::string(name)); };

    // Which predeclared exchanges are in use, so unused ones can be left out.
    auto used = [&](const std::string& name) {
        for (const auto& b : topology.bindings) {
            if (b.source == name || (b.to_exchange && b.destination == name)) return true;
        }
        for (const auto& x : topology.exchanges) {
            if (detail::string_argument(x.arguments, "alternate-exchange") == name) return true;
        }
        for (const auto& q : topology.queues) {
            if (detail::string_argument(q.options.arguments, "x-dead-letter-exchange") == name) return true;
        }
        return false;
    };

    std::string out = "digraph warren {\n    rankdir=LR;\n    node [fontname=\"Helvetica\", fontsize=11];\n"
                      "    edge [fontname=\"Helvetica\", fontsize=9];\n";
    for (const auto& x : topology.exchanges) {
        if (x.name.empty()) continue;
        if (x.name.starts_with("amq.") && !options.unused_predeclared && !used(x.name)) continue;
        out += "    " + exchange_id(x.name) + " [shape=box, style=\"rounded" + (x.internal ? ",dashed" : "") +
               "\", label=" + dot_quoted(x.name + "\n" + x.type + (x.internal ? ", internal" : "")) + "];\n";
    }
    for (const auto& q : topology.queues) {
        std::string label = q.name;
        if (options.counts) {
            label += "\nready " + std::to_string(q.counters.ready) + ", unacked " + std::to_string(q.counters.unacked);
            if (q.counters.awaiting_callback != 0) {
                label += ", awaiting callback " + std::to_string(q.counters.awaiting_callback);
            }
        }
        out += "    " + queue_id(q.name) + " [shape=cylinder, label=" + dot_quoted(label) + "];\n";
    }
    for (const auto& b : topology.bindings) {
        std::string label = b.key;
        if (!b.arguments.empty()) label += (label.empty() ? "" : "\n") + detail::describe_table(b.arguments);
        out += "    " + exchange_id(b.source) + " -> " + (b.to_exchange ? exchange_id(b.destination) : queue_id(b.destination)) +
               " [label=" + dot_quoted(label) + "];\n";
    }
    for (const auto& x : topology.exchanges) {
        const std::string alternate = detail::string_argument(x.arguments, "alternate-exchange");
        if (x.name.empty() || alternate.empty() || topology.find_exchange(alternate) == nullptr) continue;
        out += "    " + exchange_id(x.name) + " -> " + exchange_id(alternate) + " [style=dashed, label=\"alternate\"];\n";
    }
    for (const auto& q : topology.queues) {
        const field_table& args = q.options.arguments;
        if (!args.contains("x-dead-letter-exchange")) continue;
        const std::string dlx = detail::string_argument(args, "x-dead-letter-exchange");
        std::string label = "dead letters";
        if (args.contains("x-dead-letter-routing-key")) {
            label += "\nkey " + detail::string_argument(args, "x-dead-letter-routing-key");
        }
        // The default exchange is not drawn: its dead letters go straight to the queue
        // named by the key.
        const std::string target = dlx.empty() ? queue_id(detail::string_argument(args, "x-dead-letter-routing-key"))
                                               : exchange_id(dlx);
        if (dlx.empty() && !args.contains("x-dead-letter-routing-key")) continue;
        out += "    " + queue_id(q.name) + " -> " + target + " [style=dotted, label=" + dot_quoted(label) + "];\n";
    }
    if (options.consumers) {
        for (const auto& c : topology.consumers) {
            const std::string id = dot_quoted("c:" + c.queue + ":" + c.tag);
            std::string label = c.tag;
            if (c.prefetch != 0) label += "\nprefetch " + std::to_string(c.prefetch);
            if (c.priority != 0) label += "\npriority " + std::to_string(c.priority);
            if (!c.active) label += "\n(waiting)";
            out += "    " + id + " [shape=note, fontsize=9, label=" + dot_quoted(label) + "];\n";
            out += "    " + queue_id(c.queue) + " -> " + id + " [arrowhead=vee" + (c.active ? "" : ", style=dashed") + "];\n";
        }
    }
    out += "}\n";
    return out;
}

} // namespace warren
