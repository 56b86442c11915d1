#pragma once
/// @file properties.hpp
/// The AMQP basic properties a message carries.

#include <cstdint>
#include <optional>
#include <string>

#include "field_table.hpp"

namespace warren {

/// AMQP 0-9-1 basic properties. An unset property is std::nullopt (AMQP tells "absent" from
/// "empty"); `headers` is the field table a headers exchange matches on.
///
/// Thread safety: a value type.
struct properties {
    std::optional<std::string> content_type;
    std::optional<std::string> content_encoding;
    field_table headers;
    /// 1 = transient, 2 = persistent. In one process both behave alike.
    std::optional<std::uint8_t> delivery_mode;
    /// 0 to 255; queues with x-max-priority order by it.
    std::optional<std::uint8_t> priority;
    std::optional<std::string> correlation_id;
    std::optional<std::string> reply_to;
    /// Per-message TTL in milliseconds, as decimal text (AMQP's own encoding).
    std::optional<std::string> expiration;
    std::optional<std::string> message_id;
    /// Seconds since the epoch.
    std::optional<std::uint64_t> timestamp;
    std::optional<std::string> type;
    std::optional<std::string> user_id;
    std::optional<std::string> app_id;

    friend bool operator==(const properties&, const properties&) = default;
};

} // namespace warren
