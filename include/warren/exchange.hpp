#pragma once
/// @file exchange.hpp
/// The exchange concept: what a type must offer to route messages inside a broker.

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string_view>
#include <vector>

#include "field_table.hpp"
#include "properties.hpp"

namespace warren {

/// Where a binding leads: a queue or, for exchange-to-exchange bindings, an exchange.
/// Destinations are small handles the broker hands out; exchanges store and return them
/// without looking inside. Thread safety: a value type.
class destination {
public:
    enum class kind : std::uint8_t { queue, exchange };

    constexpr destination() noexcept = default;
    constexpr destination(kind k, std::uint32_t index) noexcept
        : bits_((index << 1) | (k == kind::exchange ? 1U : 0U)) {}

    [[nodiscard]] constexpr kind type() const noexcept { return (bits_ & 1U) ? kind::exchange : kind::queue; }
    [[nodiscard]] constexpr std::uint32_t index() const noexcept { return bits_ >> 1; }
    [[nodiscard]] constexpr std::uint32_t bits() const noexcept { return bits_; }

    friend constexpr auto operator<=>(destination, destination) noexcept = default;

private:
    std::uint32_t bits_ = 0;
};

/// What an exchange sees of a message when it routes it.
struct routing_view {
    std::string_view routing_key;
    const warren::properties& properties;
};

namespace detail {
struct destination_list_access;
} // namespace detail

/// Collects an exchange's routing decision. Adding a destination twice is harmless: the
/// broker delivers one copy per queue however many bindings match.
class destination_list {
public:
    /// Adds `d` to the result.
    void add(destination d) { items_.push_back(d); }
    [[nodiscard]] std::size_t size() const noexcept { return items_.size(); }
    [[nodiscard]] bool empty() const noexcept { return items_.empty(); }
    [[nodiscard]] auto begin() const noexcept { return items_.begin(); }
    [[nodiscard]] auto end() const noexcept { return items_.end(); }
    [[nodiscard]] destination operator[](std::size_t i) const noexcept { return items_[i]; }

private:
    friend struct detail::destination_list_access;
    std::vector<destination> items_;
};

namespace detail {

/// What only the broker does with a destination_list: empty it (keeping its capacity, so
/// routing allocates nothing once warm) and reach its storage, to sort and deduplicate.
struct destination_list_access {
    static void clear(destination_list& list) noexcept { list.items_.clear(); }
    [[nodiscard]] static std::vector<destination>& storage(destination_list& list) noexcept { return list.items_; }
};

} // namespace detail

/// An exchange type: a routing table the broker feeds with bindings and asks for routes.
///
/// - `E::type_name` is the name used to declare it ("topic", "x-consistent-hash").
/// - `bind(d, key, args)` adds one binding. The broker calls it once per distinct
///   (destination, key, arguments) triple, so the same (d, key) may arrive with different
///   arguments. It may throw warren::error to refuse bad arguments, leaving itself unchanged.
/// - `unbind(d, key, args)` removes a binding that `bind` accepted before.
/// - `route(msg, out)` adds to `out` every destination whose binding matches.
/// - Optionally, `static constexpr bool routes_each_destination_once = true;` promises
///   that `route` never adds a destination twice; the broker then skips the pass that
///   gives each queue one copy (a sort), as it does for direct and fanout.
/// - Optionally, `static constexpr bool routes_by_key_only = true;` promises that `route`
///   depends on the routing key alone, never on the properties: a single-threaded
///   publisher then replays the route of the key it published last while the topology is
///   unchanged, as it does for direct, fanout and topic.
///
/// The broker serialises bind and unbind against route, so an exchange needs no locks of
/// its own; `route` is const and may run on several threads at once.
template <class E>
concept exchange_type = std::default_initializable<E> && requires(E& e, const E& ce, destination d,
                                                                 std::string_view key,
                                                                 const field_table& args,
                                                                 const routing_view& msg,
                                                                 destination_list& out) {
    { E::type_name } -> std::convertible_to<std::string_view>;
    e.bind(d, key, args);
    e.unbind(d, key, args);
    ce.route(msg, out);
};

} // namespace warren

/// Destinations hash by their bits, so they can key hash tables (the topic matcher's
/// index of a pattern's destinations uses it).
template <>
struct std::hash<warren::destination> {
    std::size_t operator()(warren::destination d) const noexcept { return std::hash<std::uint32_t>{}(d.bits()); }
};
