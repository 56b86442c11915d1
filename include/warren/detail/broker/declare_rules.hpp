#pragma once
/// @file detail/broker/declare_rules.hpp
/// What a declare, delete or bind may do, and RabbitMQ's words when it may not: the default
/// exchange, reserved `amq.` names, and redeclaring with other options (equivalence).
/// Every refusal message of these rules is written here once.

#include <cstdint>
#include <string>
#include <string_view>

#include "../../error.hpp"
#include "../../field_table.hpp"
#include "../../options.hpp"

namespace warren::detail {

/// The queue arguments RabbitMQ compares when a queue is redeclared (rabbit_amqqueue's
/// declare arguments); a difference in any other argument is accepted.
inline constexpr std::string_view queue_equivalence_keys[] = {
    "x-expires",        "x-message-ttl", "x-dead-letter-exchange", "x-dead-letter-routing-key",
    "x-max-length",     "x-max-length-bytes", "x-max-priority",   "x-overflow",
    "x-queue-mode",     "x-queue-type",  "x-single-active-consumer", "x-delivery-limit",
    "x-queue-master-locator", "x-queue-leader-locator", "x-max-age"};

/// The exchange arguments RabbitMQ compares when an exchange is redeclared.
inline constexpr std::string_view exchange_equivalence_keys[] = {"alternate-exchange"};

/// The default exchange ("") cannot be declared, deleted or bound: access_refused (403).
[[noreturn]] inline void refuse_default_exchange() {
    raise(reply_code::access_refused, "operation not permitted on the default exchange");
}

/// Refuses the default exchange's name.
inline void check_not_default_exchange(std::string_view exchange) {
    if (exchange.empty()) refuse_default_exchange();
}

/// Refuses to create an exchange or queue under the reserved `amq.` prefix (403). `what`
/// is "exchange" or "queue".
inline void check_not_reserved(std::string_view name, std::string_view what) {
    if (name.starts_with("amq.")) {
        raise(reply_code::access_refused,
              std::string(what) + " name " + detail::quoted(name) + " contains reserved prefix 'amq.*'");
    }
}

/// Refuses to delete the default exchange or an `amq.` one, in RabbitMQ's words.
inline void check_exchange_deletable(std::string_view name) {
    check_not_default_exchange(name);
    if (name.starts_with("amq.")) {
        raise(reply_code::access_refused, "deletion of system exchange " + detail::quoted(name) + " not allowed");
    }
}

/// A redeclare that differs from what exists: PRECONDITION_FAILED - inequivalent arg
/// 'durable' for queue 'q': received 'true' but current is 'false'. `received` and
/// `current` come as RabbitMQ prints them (quoted, or none).
[[noreturn]] inline void refuse_inequivalent(std::string_view arg, std::string_view object, std::string_view received,
                                             std::string_view current) {
    raise(reply_code::precondition_failed, "inequivalent arg " + detail::quoted(arg) + " for " + std::string(object) +
                                               ": received " + std::string(received) + " but current is " +
                                               std::string(current));
}

/// A field value as RabbitMQ prints it in an inequivalence message.
inline std::string describe_argument(const field_value* value) {
    if (value == nullptr) return "none";
    if (const auto* s = value->get_if<std::string>()) return detail::quoted(*s);
    if (const auto* i = value->get_if<std::int64_t>()) return detail::quoted(std::to_string(*i));
    if (const auto* b = value->get_if<bool>()) return detail::quoted(*b ? "true" : "false");
    if (const auto* d = value->get_if<double>()) return detail::quoted(std::to_string(*d));
    return "a table or array";
}

/// Refuses a redeclare whose `received` arguments differ from the `current` ones in one of
/// `keys`.
template <class Keys>
void check_equivalent_arguments(const field_table& received, const field_table& current, const Keys& keys,
                                std::string_view object) {
    for (std::string_view key : keys) {
        const field_value* r = received.find(key);
        const field_value* c = current.find(key);
        if ((r == nullptr) != (c == nullptr) || (r != nullptr && !(*r == *c))) {
            refuse_inequivalent(key, object, describe_argument(r), describe_argument(c));
        }
    }
}

/// Refuses a flag that differs on redeclare.
inline void check_equivalent_flag(std::string_view arg, std::string_view object, bool received, bool current) {
    if (received == current) return;
    refuse_inequivalent(arg, object, detail::quoted(received ? "true" : "false"), detail::quoted(current ? "true" : "false"));
}

/// Refuses redeclaring exchange `name` (of `current_type`, with `current` options) as
/// `type` with `received` options, unless they are equivalent as RabbitMQ has it: type and
/// flags alike, and of the arguments only alternate-exchange compared.
inline void check_exchange_equivalent(std::string_view name, std::string_view type, const exchange_options& received,
                                      std::string_view current_type, const exchange_options& current) {
    const std::string object = "exchange " + detail::quoted(name);
    if (type != current_type) refuse_inequivalent("type", object, detail::quoted(type), detail::quoted(current_type));
    check_equivalent_flag("durable", object, received.durable, current.durable);
    check_equivalent_flag("auto_delete", object, received.auto_delete, current.auto_delete);
    check_equivalent_flag("internal", object, received.internal, current.internal);
    check_equivalent_arguments(received.arguments, current.arguments, exchange_equivalence_keys, object);
}

/// Refuses redeclaring queue `name` with `received` options that differ from its `current`
/// ones in a flag or a compared argument.
inline void check_queue_equivalent(std::string_view name, const queue_options& received, const queue_options& current) {
    const std::string object = "queue " + detail::quoted(name);
    check_equivalent_flag("durable", object, received.durable, current.durable);
    check_equivalent_flag("exclusive", object, received.exclusive, current.exclusive);
    check_equivalent_flag("auto_delete", object, received.auto_delete, current.auto_delete);
    // A classic queue need not carry x-queue-type: none and 'classic' are one
    // (RabbitMQ's rabbit_amqqueue, rabbitmq-common#341).
    auto classic = [](const field_table& args) {
        const field_value* type = args.find("x-queue-type");
        return type == nullptr || (type->get_if<std::string>() != nullptr && *type->get_if<std::string>() == "classic");
    };
    if (classic(received.arguments) && classic(current.arguments)) {
        field_table r = received.arguments;
        field_table c = current.arguments;
        r.erase("x-queue-type");
        c.erase("x-queue-type");
        check_equivalent_arguments(r, c, queue_equivalence_keys, object);
    } else {
        check_equivalent_arguments(received.arguments, current.arguments, queue_equivalence_keys, object);
    }
}

/// Checks what a new exchange's options must satisfy: alternate-exchange, if given, is a
/// string (precondition_failed otherwise).
inline void check_new_exchange_options(std::string_view name, const exchange_options& options) {
    if (const field_value* alternate = options.arguments.find("alternate-exchange")) {
        if (alternate->get_if<std::string>() == nullptr) {
            raise(reply_code::precondition_failed,
                  "invalid arg 'alternate-exchange' for exchange " + detail::quoted(name) + ": expected a string");
        }
    }
}

} // namespace warren::detail
