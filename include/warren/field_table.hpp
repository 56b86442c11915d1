#pragma once
/// @file field_table.hpp
/// AMQP field tables: typed header values and binding arguments.

#include <algorithm>
#include <bit>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "detail/core/hash_index.hpp"
#include "error.hpp"
#include "routing_key.hpp"

namespace warren {

class field_value;
struct field_entry;

/// An AMQP array: an ordered list of values.
using field_array = std::vector<field_value>;

/// The kind of value a field holds. AMQP's several integer and float widths collapse into
/// one of each, as RabbitMQ's headers matching compares them by value.
enum class field_type : std::uint8_t { void_, boolean, integer, floating, string, table, array };

/// An AMQP field table: names mapped to typed values, kept sorted by name so that equality
/// and lookup do not depend on insertion order (RabbitMQ sorts tables the same way).
///
/// It is a flat map, one sorted array, as std::flat_map: lookup is a binary search and
/// reading allocates nothing. Building one from a list costs O(n log n) in any order (the
/// list constructors sort once), set() costs O(log n) for a name that sorts after every
/// present one (so names set in order append) and moves the entries after it otherwise:
/// build a large table from a list.
///
/// @code
/// warren::field_table args{{"x-match", "any"}, {"format", "pdf"}, {"size", 42}};
/// if (const auto* v = args.find("format")) { ... }
/// @endcode
/// Thread safety: a value type; concurrent reads are safe, writes need external ordering.
class field_table {
public:
    using const_iterator = std::vector<field_entry>::const_iterator;

    // field_value holds field_tables and field_tables hold field_values: the special
    // members are defined below, once both types are complete.
    field_table() noexcept;
    field_table(const field_table& other);
    field_table(field_table&& other) noexcept;
    field_table& operator=(const field_table& other);
    field_table& operator=(field_table&& other) noexcept;
    ~field_table();
    /// Builds from name/value pairs in any order; a repeated name keeps the last value.
    field_table(std::initializer_list<field_entry> entries);
    /// Builds from entries in any order, in O(n log n); a repeated name keeps the value
    /// that comes last in `entries`.
    explicit field_table(std::vector<field_entry> entries);

    /// Sets `name` to `value`, replacing any value it had.
    void set(std::string_view name, field_value value);
    /// Removes `name`; returns whether it was there.
    bool erase(std::string_view name);
    /// The value of `name`, or nullptr.
    [[nodiscard]] const field_value* find(std::string_view name) const noexcept;
    /// Whether `name` is present.
    [[nodiscard]] bool contains(std::string_view name) const noexcept { return find(name) != nullptr; }
    /// The string value of `name`, or nullptr if it is missing or not a string.
    [[nodiscard]] const std::string* find_string(std::string_view name) const noexcept;

    /// Number of fields.
    [[nodiscard]] std::size_t size() const noexcept;
    [[nodiscard]] bool empty() const noexcept;
    void clear() noexcept;
    /// Fields in ascending name order.
    [[nodiscard]] const_iterator begin() const noexcept;
    [[nodiscard]] const_iterator end() const noexcept;

    friend bool operator==(const field_table& a, const field_table& b);

private:
    [[nodiscard]] std::vector<field_entry>::iterator lower_bound(std::string_view name);
    std::vector<field_entry> entries_;
};

/// One typed AMQP value: void, bool, signed integer, float, string, table or array.
///
/// Thread safety: a value type.
class field_value {
public:
    using storage = std::variant<std::monostate, bool, std::int64_t, double, std::string,
                                 field_table, field_array>;

    /// The void value (AMQP 'V'): in a headers binding it matches on presence alone.
    field_value() noexcept = default;
    field_value(bool b) noexcept : value_(b) {}
    /// Any signed integer; AMQP's widths all compare as one kind.
    template <std::signed_integral T>
        requires(!std::same_as<T, char>)
    field_value(T n) noexcept : value_(static_cast<std::int64_t>(n)) {}
    /// Any unsigned integer that fits a signed 64-bit one (AMQP tables have no unsigned
    /// 64-bit type); a larger one is precondition_failed rather than a wrapped value.
    template <std::unsigned_integral T>
        requires(!std::same_as<T, bool> && !std::same_as<T, char>)
    field_value(T n) : value_(std::int64_t{}) {
        if (static_cast<std::uint64_t>(n) > static_cast<std::uint64_t>(INT64_MAX)) {
            detail::raise(reply_code::precondition_failed,
                          "field value " + std::to_string(n) + " exceeds the signed 64-bit range of AMQP integers");
        }
        value_ = static_cast<std::int64_t>(n);
    }
    /// A char is neither a number nor a string here: say which with an int or a string.
    field_value(char) = delete;
    template <std::floating_point T>
    field_value(T x) noexcept : value_(static_cast<double>(x)) {}
    field_value(const char* s) : value_(std::string(s)) {}
    field_value(std::string_view s) : value_(std::string(s)) {}
    field_value(std::string s) noexcept : value_(std::move(s)) {}
    field_value(field_table t) noexcept : value_(std::move(t)) {}
    field_value(field_array a) noexcept : value_(std::move(a)) {}

    /// Which kind of value this is.
    [[nodiscard]] field_type type() const noexcept { return static_cast<field_type>(value_.index()); }
    [[nodiscard]] bool is_void() const noexcept { return type() == field_type::void_; }

    /// A pointer to the value if it holds a T (bool, std::int64_t, double, std::string,
    /// field_table, field_array), else nullptr.
    template <class T>
    [[nodiscard]] const T* get_if() const noexcept { return std::get_if<T>(&value_); }

    /// The underlying variant, for std::visit.
    [[nodiscard]] const storage& value() const noexcept { return value_; }

    /// Equality as RabbitMQ's headers exchange compares values: integers and floats compare
    /// by numeric value (1 == 1.0), every other kind only equals its own kind.
    friend bool operator==(const field_value& a, const field_value& b);

private:
    storage value_;
};

/// A name and its value in a field_table.
struct field_entry {
    std::string name;
    field_value value;

    friend bool operator==(const field_entry&, const field_entry&) = default;
};

// field_entry is complete only from here on, so members that touch entries_ live below.
inline field_table::field_table() noexcept = default;
inline field_table::field_table(const field_table& other) = default;
inline field_table::field_table(field_table&& other) noexcept = default;
inline field_table& field_table::operator=(const field_table& other) = default;
inline field_table& field_table::operator=(field_table&& other) noexcept = default;
inline field_table::~field_table() = default;
inline std::size_t field_table::size() const noexcept { return entries_.size(); }
inline bool field_table::empty() const noexcept { return entries_.empty(); }
inline void field_table::clear() noexcept { entries_.clear(); }
inline field_table::const_iterator field_table::begin() const noexcept { return entries_.begin(); }
inline field_table::const_iterator field_table::end() const noexcept { return entries_.end(); }

inline field_table::field_table(std::initializer_list<field_entry> entries)
    : field_table(std::vector<field_entry>(entries)) {}

inline field_table::field_table(std::vector<field_entry> entries) : entries_(std::move(entries)) {
    // Stable, so that of equal names the last one given is the last one here; keep it.
    std::stable_sort(entries_.begin(), entries_.end(),
                     [](const field_entry& a, const field_entry& b) { return a.name < b.name; });
    auto kept = entries_.begin();
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
        auto next = it + 1;
        if (next != entries_.end() && next->name == it->name) continue; // a later value wins
        if (kept != it) *kept = std::move(*it);
        ++kept;
    }
    entries_.erase(kept, entries_.end());
}

inline std::vector<field_entry>::iterator field_table::lower_bound(std::string_view name) {
    return std::lower_bound(entries_.begin(), entries_.end(), name,
                            [](const field_entry& e, std::string_view n) { return e.name < n; });
}

inline void field_table::set(std::string_view name, field_value value) {
    if (entries_.empty() || entries_.back().name < name) { // in name order: append
        entries_.push_back(field_entry{std::string(name), std::move(value)});
        return;
    }
    auto it = lower_bound(name);
    if (it != entries_.end() && it->name == name) {
        it->value = std::move(value);
    } else {
        entries_.insert(it, field_entry{std::string(name), std::move(value)});
    }
}

inline bool field_table::erase(std::string_view name) {
    auto it = lower_bound(name);
    if (it == entries_.end() || it->name != name) return false;
    entries_.erase(it);
    return true;
}

inline const field_value* field_table::find(std::string_view name) const noexcept {
    auto it = std::lower_bound(entries_.begin(), entries_.end(), name,
                               [](const field_entry& e, std::string_view n) { return e.name < n; });
    return it != entries_.end() && it->name == name ? &it->value : nullptr;
}

inline const std::string* field_table::find_string(std::string_view name) const noexcept {
    const field_value* value = find(name);
    return value == nullptr ? nullptr : value->get_if<std::string>();
}

inline bool operator==(const field_table& a, const field_table& b) { return a.entries_ == b.entries_; }

inline bool operator==(const field_value& a, const field_value& b) {
    const auto* ai = a.get_if<std::int64_t>();
    const auto* bi = b.get_if<std::int64_t>();
    const auto* af = a.get_if<double>();
    const auto* bf = b.get_if<double>();
    // Erlang's == compares numbers arithmetically, and exactly: 2^53 + 1 is not 2^53.0,
    // though converting the integer to a double would round it so. RabbitMQ's matching
    // uses it.
    auto same_number = [](std::int64_t i, double d) {
        if (!(d >= -0x1p63 && d < 0x1p63)) return false; // beyond int64, or NaN
        const auto n = static_cast<std::int64_t>(d);     // exact when d is integral
        return static_cast<double>(n) == d && n == i;
    };
    if (ai && bf) return same_number(*ai, *bf);
    if (af && bi) return same_number(*bi, *af);
    return a.value_ == b.value_;
}

namespace detail {

/// Field tables nest at most this deep; deeper ones are refused rather than recursed into.
inline constexpr std::size_t max_table_depth = 64;

inline void validate_table(const field_table& table, std::string_view what, std::size_t depth = 0);

inline void validate_value(const field_value& value, std::string_view what, std::size_t depth,
                           std::string_view field) {
    if (const auto* x = value.get_if<double>()) {
        // RabbitMQ's parser (Erlang's float matching) cannot decode NaN or an infinity, and
        // a NaN equals nothing, not even itself, so a binding holding one could never be
        // found again to unbind.
        if (!(*x - *x == 0.0)) {
            raise(reply_code::precondition_failed,
                  std::string(what) + " has a float that is not finite in field " + detail::quoted(field));
        }
    } else if (const auto* table = value.get_if<field_table>()) {
        validate_table(*table, what, depth + 1);
    } else if (const auto* array = value.get_if<field_array>()) {
        if (depth + 1 > max_table_depth) {
            raise(reply_code::precondition_failed, std::string(what) + " nests deeper than 64 levels");
        }
        for (const auto& element : *array) validate_value(element, what, depth + 1, field);
    }
}

/// Refuses a table that AMQP cannot carry: a name over 255 bytes, a float that is NaN or
/// infinite, or absurd nesting.
inline void validate_table(const field_table& table, std::string_view what, std::size_t depth) {
    if (depth > max_table_depth) {
        raise(reply_code::precondition_failed, std::string(what) + " nests deeper than 64 levels");
    }
    for (const auto& entry : table) {
        if (entry.name.size() > max_name_length) {
            raise(reply_code::precondition_failed,
                  std::string(what) + " has a field name of " + std::to_string(entry.name.size()) +
                      " bytes; the limit is " + std::to_string(max_name_length));
        }
        validate_value(entry.value, what, depth, entry.name);
    }
}

[[nodiscard]] inline std::uint64_t hash_value(const field_table& table) noexcept;

/// A hash consistent with field_value's ==: equal values hash alike, 1 and 1.0 included.
[[nodiscard]] inline std::uint64_t hash_value(const field_value& value) noexcept {
    auto integer = [](std::int64_t n) { return combine_hash(0x51ED27C4C0FFEEULL, static_cast<std::uint64_t>(n)); };
    switch (value.type()) {
    case field_type::void_: return 0x766F6964ULL;
    case field_type::boolean: return *value.get_if<bool>() ? 0x74727565ULL : 0x66616C73ULL;
    case field_type::integer: return integer(*value.get_if<std::int64_t>());
    case field_type::floating: {
        const double d = *value.get_if<double>();
        // A float equal to an integer (2.0, and -0.0 which is 0) hashes as that integer.
        if (d >= -0x1p63 && d < 0x1p63 && static_cast<double>(static_cast<std::int64_t>(d)) == d) {
            return integer(static_cast<std::int64_t>(d));
        }
        return combine_hash(0xF10A7ULL, std::bit_cast<std::uint64_t>(d));
    }
    case field_type::string: return std::hash<std::string_view>{}(*value.get_if<std::string>());
    case field_type::table: return hash_value(*value.get_if<field_table>());
    case field_type::array: {
        std::uint64_t h = 0xA88A7ULL;
        for (const auto& element : *value.get_if<field_array>()) h = combine_hash(h, hash_value(element));
        return h;
    }
    }
    return 0;
}

/// A hash of a whole table, consistent with field_table's ==.
[[nodiscard]] inline std::uint64_t hash_value(const field_table& table) noexcept {
    std::uint64_t h = 0x7AB1EULL + table.size();
    for (const auto& entry : table) {
        h = combine_hash(h, std::hash<std::string_view>{}(entry.name));
        h = combine_hash(h, hash_value(entry.value));
    }
    return h;
}

} // namespace detail
} // namespace warren
