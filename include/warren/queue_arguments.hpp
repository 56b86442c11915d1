#pragma once
/// @file queue_arguments.hpp
/// queue_arguments: a queue's `x-` arguments, checked and parsed as RabbitMQ does.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "detail/message/expiration.hpp"
#include "error.hpp"
#include "field_table.hpp"

namespace warren {

/// What a queue at its length limit does with one more message (`x-overflow`).
enum class overflow_mode : std::uint8_t {
    drop_head,          ///< take it, then drop (dead-letter) from the head until within limits
    reject_publish,     ///< refuse it: the publisher's confirm is a nack
    reject_publish_dlx, ///< refuse it and dead-letter it
};

/// The behaviour a queue's arguments ask for, parsed once when the queue is declared.
/// Unset optionals mean "no limit" / "none".
///
/// Thread safety: a value type.
struct queue_arguments {
    std::optional<std::chrono::milliseconds> message_ttl;  ///< x-message-ttl
    std::optional<std::chrono::milliseconds> expires;      ///< x-expires: delete when unused this long
    std::optional<std::uint64_t> max_length;               ///< x-max-length: ready messages
    std::optional<std::uint64_t> max_length_bytes;         ///< x-max-length-bytes: body bytes of ready messages
    overflow_mode overflow = overflow_mode::drop_head;     ///< x-overflow
    std::optional<std::string> dead_letter_exchange;       ///< x-dead-letter-exchange ("" is the default exchange)
    std::optional<std::string> dead_letter_routing_key;    ///< x-dead-letter-routing-key
    std::uint8_t max_priority = 0;                         ///< x-max-priority; 0: no priorities
    bool single_active_consumer = false;                   ///< x-single-active-consumer

    /// Whether any length limit is set.
    [[nodiscard]] bool limited() const noexcept { return max_length || max_length_bytes; }

    /// Parses `args` of queue `queue`. A value of the wrong type or out of range is
    /// precondition_failed (406), worded as RabbitMQ words it:
    /// "invalid arg 'x-max-length' for queue 'q': {value_negative,-1}".
    static queue_arguments parse(const field_table& args, std::string_view queue);
};

namespace detail {

/// RabbitMQ's name for the AMQP type of a field value, as its error messages print it.
inline const char* amqp_type_name(const field_value& value) noexcept {
    switch (value.type()) {
    case field_type::void_: return "void";
    case field_type::boolean: return "bool";
    case field_type::integer: return "long";
    case field_type::floating: return "double";
    case field_type::string: return "longstr";
    case field_type::table: return "table";
    case field_type::array: return "array";
    }
    return "unknown";
}

class argument_reader {
public:
    argument_reader(const field_table& args, std::string_view queue) : args_(args), queue_(queue) {}

    [[noreturn]] void invalid(std::string_view key, const std::string& why) const {
        raise(reply_code::precondition_failed,
              "invalid arg " + detail::quoted(key) + " for queue " + detail::quoted(queue_) + ": " + why);
    }

    /// An integer argument; `minimum` is 0 or 1 (x-expires refuses zero). Above `maximum`
    /// it is refused as `{<too_large>,N}`: RabbitMQ says value_too_large for TTLs
    /// (rabbit_misc:check_expiry) and max_value_exceeded for x-max-priority.
    std::optional<std::int64_t> integer(std::string_view key, std::int64_t minimum, std::int64_t maximum,
                                        std::string_view too_large = "value_too_large") const {
        const field_value* value = args_.find(key);
        if (value == nullptr) return std::nullopt;
        const std::int64_t* n = value->get_if<std::int64_t>();
        if (n == nullptr) invalid(key, std::string("{unacceptable_type,") + amqp_type_name(*value) + "}");
        if (*n < 0) invalid(key, "{value_negative," + std::to_string(*n) + "}");
        if (*n < minimum) invalid(key, "{value_zero," + std::to_string(*n) + "}");
        if (*n > maximum) invalid(key, "{" + std::string(too_large) + "," + std::to_string(*n) + "}");
        return *n;
    }
    std::optional<std::string> text(std::string_view key) const {
        const field_value* value = args_.find(key);
        if (value == nullptr) return std::nullopt;
        const std::string* s = value->get_if<std::string>();
        if (s == nullptr) invalid(key, std::string("{unacceptable_type,") + amqp_type_name(*value) + "}");
        return *s;
    }
    std::optional<bool> boolean(std::string_view key) const {
        const field_value* value = args_.find(key);
        if (value == nullptr) return std::nullopt;
        const bool* b = value->get_if<bool>();
        if (b == nullptr) invalid(key, std::string("{unacceptable_type,") + amqp_type_name(*value) + "}");
        return *b;
    }

private:
    const field_table& args_;
    std::string_view queue_;
};

} // namespace detail

inline queue_arguments queue_arguments::parse(const field_table& args, std::string_view queue) {
    const detail::argument_reader read(args, queue);
    constexpr std::int64_t no_limit = INT64_MAX;
    queue_arguments parsed;
    // Checked in the order of rabbit_amqqueue:declare_args(), so that of several invalid
    // arguments the same one is reported.
    if (auto expires = read.integer("x-expires", 1, detail::max_timer_ms)) parsed.expires = std::chrono::milliseconds(*expires);
    if (auto ttl = read.integer("x-message-ttl", 0, detail::max_timer_ms)) parsed.message_ttl = std::chrono::milliseconds(*ttl);
    parsed.dead_letter_exchange = read.text("x-dead-letter-exchange");
    parsed.dead_letter_routing_key = read.text("x-dead-letter-routing-key");
    if (parsed.dead_letter_routing_key && !parsed.dead_letter_exchange) {
        read.invalid("x-dead-letter-routing-key", "routing_key_but_no_dlx_defined");
    }
    if (auto n = read.integer("x-max-length", 0, no_limit)) parsed.max_length = static_cast<std::uint64_t>(*n);
    if (auto n = read.integer("x-max-length-bytes", 0, no_limit)) parsed.max_length_bytes = static_cast<std::uint64_t>(*n);
    if (auto p = read.integer("x-max-priority", 0, 255, "max_value_exceeded")) {
        parsed.max_priority = static_cast<std::uint8_t>(*p);
    }
    if (auto mode = read.text("x-overflow")) {
        if (*mode == "drop-head") parsed.overflow = overflow_mode::drop_head;
        else if (*mode == "reject-publish") parsed.overflow = overflow_mode::reject_publish;
        else if (*mode == "reject-publish-dlx") parsed.overflow = overflow_mode::reject_publish_dlx;
        else read.invalid("x-overflow", "invalid_overflow"); // RabbitMQ names no value
    }
    if (auto sac = read.boolean("x-single-active-consumer")) parsed.single_active_consumer = *sac;
    return parsed;
}

} // namespace warren
