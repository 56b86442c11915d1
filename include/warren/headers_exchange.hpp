#pragma once
/// @file headers_exchange.hpp
/// Headers: messages matched by their header table against binding arguments.

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "detail/core/hash_index.hpp"
#include "exchange.hpp"

namespace warren {

/// How a headers binding combines its fields (the `x-match` argument).
enum class header_match : std::uint8_t {
    all,        ///< every non-`x-` field must match (the default)
    any,        ///< at least one non-`x-` field must match
    all_with_x, ///< every field must match, `x-` fields included
    any_with_x, ///< at least one field must match, `x-` fields included
};

/// Reads `x-match` from binding arguments. Throws precondition_failed (406) for a value
/// RabbitMQ refuses: anything but the strings all, any, all-with-x and any-with-x.
/// Thread-safe.
[[nodiscard]] inline header_match parse_header_match(const field_table& args) {
    const field_value* v = args.find("x-match");
    if (v == nullptr) return header_match::all;
    const auto* s = v->get_if<std::string>();
    if (s == nullptr) {
        detail::raise(reply_code::precondition_failed,
                      "invalid x-match field type; expected a string: all, any, all-with-x or any-with-x");
    }
    if (*s == "all") return header_match::all;
    if (*s == "any") return header_match::any;
    if (*s == "all-with-x") return header_match::all_with_x;
    if (*s == "any-with-x") return header_match::any_with_x;
    detail::raise(reply_code::precondition_failed,
                  "invalid x-match field value " + detail::quoted(*s) +
                      "; expected all, any, all-with-x or any-with-x");
}

/// Whether a message with `headers` matches a binding with arguments `args`, exactly as
/// RabbitMQ's headers exchange decides: `x-match` picks all or any; fields named `x-...`
/// are ignored unless the mode is all-with-x or any-with-x; a void-valued argument matches
/// on the header's presence alone; integers and floats compare by value. With `any` and no
/// fields to compare nothing matches; with `all` everything does. Thread-safe.
[[nodiscard]] inline bool headers_match(const field_table& args, header_match mode, const field_table& headers) {
    const bool with_x = mode == header_match::all_with_x || mode == header_match::any_with_x;
    const bool want_all = mode == header_match::all || mode == header_match::all_with_x;
    // Both tables are sorted by name, so one merge-like pass compares them.
    auto data = headers.begin();
    bool any_matched = false;
    for (const auto& field : args) {
        const std::string_view name = field.name;
        if (name == "x-match") continue;
        if (!with_x && name.starts_with("x-")) continue;
        while (data != headers.end() && data->name < name) ++data;
        bool matched = false;
        if (data != headers.end() && data->name == name) {
            matched = field.value.is_void() || field.value == data->value;
            ++data;
        }
        if (matched) {
            any_matched = true;
            if (!want_all) return true;
        } else if (want_all) {
            return false;
        }
    }
    return want_all ? true : any_matched;
}

/// Routes by header table. Binding and unbinding are O(1) however many bindings it has.
/// Thread safety: as the exchange concept says.
class headers_exchange {
public:
    static constexpr std::string_view type_name = "headers";

    void bind(destination d, std::string_view /*key*/, const field_table& args) {
        const header_match mode = parse_header_match(args); // refuses before changing anything
        const std::uint64_t h = hash(d, args);
        if (std::uint32_t* at = find(h, d, args)) {
            ++bindings_[*at].count; // the same arguments under another key: one more binding
            return;
        }
        bindings_.push_back({d, mode, args, 1});
        index_.insert(h, static_cast<std::uint32_t>(bindings_.size() - 1));
    }
    void unbind(destination d, std::string_view /*key*/, const field_table& args) {
        // Bindings with the same arguments to the same destination differ only by key,
        // which this exchange ignores: they are counted as one entry.
        const std::uint64_t h = hash(d, args);
        std::uint32_t* found = find(h, d, args);
        if (found == nullptr) return;
        const std::uint32_t at = *found;
        if (--bindings_[at].count > 0) return;
        (void)index_.erase(h, [&](std::uint32_t p) { return p == at; });
        const std::uint32_t last = static_cast<std::uint32_t>(bindings_.size() - 1);
        if (at != last) { // the last one fills the hole
            binding& moved = bindings_[last];
            *index_.find(hash(moved.target, moved.args), [&](std::uint32_t p) { return p == last; }) = at;
            bindings_[at] = std::move(moved);
        }
        bindings_.pop_back();
        if (bindings_.size() * 4 < bindings_.capacity() && bindings_.capacity() > 64) bindings_.shrink_to_fit();
    }
    void route(const routing_view& msg, destination_list& out) const {
        for (const auto& b : bindings_) {
            if (headers_match(b.args, b.mode, msg.properties.headers)) out.add(b.target);
        }
    }

private:
    struct binding {
        destination target;
        header_match mode;
        field_table args;
        std::uint32_t count; // bindings with these arguments to this destination
    };
    static std::uint64_t hash(destination d, const field_table& args) noexcept {
        return detail::combine_hash(detail::mix64(d.bits()), detail::hash_value(args));
    }
    std::uint32_t* find(std::uint64_t h, destination d, const field_table& args) noexcept {
        return index_.find(h, [&](std::uint32_t at) { return bindings_[at].target == d && bindings_[at].args == args; });
    }

    std::vector<binding> bindings_;
    detail::hash_index<std::uint32_t> index_; // (destination, arguments) -> position in bindings_
};

} // namespace warren
